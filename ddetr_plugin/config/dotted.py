"""Reading and writing config values at dotted keys such as "MODEL.TRANSFORMER.D_MODEL", and configs
(in memory or as YAML) from a mapping of such keys to values."""
from typing import Any, Dict, Mapping

import yaml
from fvcore.common.config import CfgNode

from ..utils.file_io import atomic_write
from .loading import get_cfg, load_config


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


def write_config(path: str, values: Mapping[str, Any], header: str = "") -> None:
    """Write the YAML of the dotted ``values`` that differ from the defaults (``header`` as comments).

    Raises:
        KeyError: a key that is not a config key.
        RuntimeError: ``load_config`` does not read back ``values`` (never expected).
    """
    defaults = get_cfg()
    nested: Dict[str, Any] = {}
    for key, value in values.items():
        value = _as_type_of(config_value(defaults, key), value)
        if value == config_value(defaults, key):
            continue
        *sections, leaf = key.split(".")
        node = nested
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = value
    comments = "".join(f"# {line}\n" for line in header.splitlines())
    text = comments + yaml.safe_dump(nested, sort_keys=False, default_flow_style=False)
    atomic_write(path, lambda f: f.write(text), binary=False)
    loaded = load_config(path)
    wrong = [key for key, value in typed(values).items() if config_value(loaded, key) != value]
    if wrong:
        raise RuntimeError(f"{path} does not read back as written for {wrong}")


def config_with(values: Mapping[str, Any]):
    """``get_cfg()`` with the dotted ``values`` set (converted to the defaults' types)."""
    cfg = get_cfg()
    for key, value in values.items():
        set_config_value(cfg, key, _as_type_of(config_value(cfg, key), value))
    return cfg


def typed(values: Mapping[str, Any]) -> Dict[str, Any]:
    """The dotted ``values`` in the types of their defaults (an int cost 2 as 2.0, tuples as lists)."""
    defaults = get_cfg()
    return {key: _as_type_of(config_value(defaults, key), value) for key, value in values.items()}


def _as_type_of(default: Any, value: Any) -> Any:
    """``value`` in the type of the config default (an int cost 2 as 2.0, a tuple as a list)."""
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
