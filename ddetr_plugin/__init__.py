"""Deformable DETR as a modular plugin for detection codebases."""

__version__ = "0.1.0"

from .config import get_cfg, load_config  # noqa: E402
from .modeling import build_model  # noqa: E402

__all__ = ["get_cfg", "load_config", "build_model", "__version__"]
