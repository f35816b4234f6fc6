"""Isolation flavors. A flavor is one module here exposing a `Stage1` subclass as `STAGE1`."""

from __future__ import annotations

import importlib

from rktnetes.errors import Stage1Error

FLAVORS = {"default": "rktnetes.stage1.default", "fly": "rktnetes.stage1.fly"}


def get_stage1(name: str):
    """The flavor called `name` (imported on demand: the monitor loads only its own)."""
    mod = FLAVORS.get(name or "default")
    if mod is None:
        raise Stage1Error(f"unknown stage1 {name!r} (available: {', '.join(sorted(FLAVORS))})")
    return importlib.import_module(mod).STAGE1
