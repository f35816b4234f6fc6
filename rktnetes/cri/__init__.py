"""The Kubernetes CRI v1 front end: `rkt cri` serves runtime.v1.RuntimeService and
runtime.v1.ImageService on a unix socket, calling stage0's typed entries in-process."""
