"""Deformable DETR as a modular plugin for detection codebases.

The top-level names load their modules on first use (PEP 562), so ``import ddetr_plugin.ops`` (the op,
usable by any model) does not import the config, the model, fvcore, iopath or scipy.
"""
import importlib

__version__ = "0.1.0"

_LAZY = {"get_cfg": "ddetr_plugin.config", "load_config": "ddetr_plugin.config",
         "build_model": "ddetr_plugin.modeling"}

__all__ = ["get_cfg", "load_config", "build_model", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ddetr_plugin' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
