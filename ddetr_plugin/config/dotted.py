"""Reading and writing config values at dotted keys such as "MODEL.TRANSFORMER.D_MODEL"."""
from typing import Any

from fvcore.common.config import CfgNode


def config_value(cfg: CfgNode, dotted: str) -> Any:
    """``cfg`` at ``dotted`` (tuples as lists).

    Raises:
        KeyError: naming ``dotted``, when some part of it is not in ``cfg``.
    """
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, CfgNode) or part not in node:
            raise KeyError(f"{dotted!r} is not a config key (ddetr_plugin/config/defaults.py)")
        node = node[part]
    return list(node) if isinstance(node, tuple) else node


def set_config_value(cfg: CfgNode, dotted: str, value: Any, new_allowed: bool = False) -> None:
    """Set ``cfg`` at ``dotted`` to ``value``; with ``new_allowed`` a missing last part is created.

    Raises:
        KeyError: naming ``dotted``, when a section on the way, or (without ``new_allowed``) the
            last part, is not in ``cfg``.
    """
    *sections, leaf = dotted.split(".")
    node = cfg
    for section in sections:
        if not isinstance(node, CfgNode) or section not in node:
            raise KeyError(f"{dotted!r}: {section!r} is not a config section")
        node = node[section]
    if leaf not in node and not new_allowed:
        raise KeyError(f"{dotted!r} is not a config key")
    node[leaf] = value
