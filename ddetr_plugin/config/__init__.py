"""Configuration: every default (defaults.py) and YAML loading with ``_BASE_`` and IMPORTS."""
from fvcore.common.config import CfgNode

from .loading import ConfigKeyError, get_cfg, load_config

__all__ = ["CfgNode", "ConfigKeyError", "get_cfg", "load_config"]
