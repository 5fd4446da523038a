"""Model components. Importing this package registers the built-in ones in ddetr_plugin.registry."""
from . import backbone, criterion, matcher, meta_arch, position_encoding, postprocessor, transformer  # noqa: F401
from .meta_arch import build_model

__all__ = ["build_model"]
