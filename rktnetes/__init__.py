"""rktnetes: a rkt-style pod engine with pluggable isolation and a Kubernetes CRI endpoint."""

__version__ = "0.1.0"
