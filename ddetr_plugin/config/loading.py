"""Building a config: defaults, YAML files with ``_BASE_``, KEY VALUE overrides, IMPORTS.

``load_config`` reads the whole ``_BASE_`` chain and checks every key and value
against the defaults before anything is merged, so a mistake is reported with
the file it is in (or "the command-line overrides") instead of fvcore's bare
``Non-existent config key``. The merge itself is fvcore's, so a config valid
here gives the same result as ``get_cfg().merge_from_file(path)``.
"""
import difflib
import importlib
import os
from typing import Any, Sequence

import torch
import yaml
from fvcore.common.config import BASE_KEY, CfgNode
from iopath.common.file_io import g_pathmgr

from .defaults import _C
from .deprecated import check_deprecated, pop_deprecated

OVERRIDES_SOURCE = "the command-line overrides"


class ConfigKeyError(KeyError):
    """An unknown config key; ``str()`` is the message itself (KeyError would quote it)."""

    def __str__(self) -> str:
        return str(self.args[0])


def get_cfg() -> CfgNode:
    """A fresh, mutable copy of every default (``ddetr_plugin/config/defaults.py``).

    ``MODEL.DEVICE`` defaults to "cuda" but is set to "cpu" here when no GPU is
    available, so the defaults run anywhere; a config or override that names a
    device explicitly still wins.
    """
    cfg = _C.clone()
    if not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    return cfg


def load_config(path: str | os.PathLike | None, opts: Sequence[Any] | None = None) -> CfgNode:
    """The frozen config: defaults, then ``path`` (following ``_BASE_``), then ``opts``.

    Args:
        path: a YAML file, or None for the defaults alone. ``_BASE_`` (a file or a
            list of files) is resolved relative to the file that names it.
        opts: overrides as a flat list ``[KEY, VALUE, KEY, VALUE, ...]`` with dotted
            keys, e.g. ``["SOLVER.BASE_LR", "0.0001"]``; string values are parsed as
            Python literals where possible, as fvcore does.

    Every module in ``IMPORTS`` is imported last, so user components and datasets
    register themselves before anything is built.

    Raises:
        FileNotFoundError: ``path`` or a ``_BASE_`` file does not exist.
        ConfigKeyError: an unknown key (a KeyError naming the key, its file and close matches).
        ValueError: a value of the wrong type, an odd-length ``opts``, a malformed file, a
            deprecated key (``deprecated.py``) set to a value the model cannot honour.
        ImportError: a module in ``IMPORTS`` cannot be imported.
    """
    cfg = get_cfg()
    sources: list[tuple[str, dict]] = []
    if path is not None:
        path = os.fspath(path)
        sources += _read_chain(path, included_by=None, visiting=())
    overrides = _overrides_as_dict(opts or [])
    sources.append((OVERRIDES_SOURCE, overrides))
    deprecated = [found for source, values in sources for found in pop_deprecated(values, source)]
    for source, values in sources:
        _check_values(values, cfg, source)
    if path is not None:
        cfg.merge_from_file(path)
    cfg.merge_from_list(list(opts or []))
    check_deprecated(deprecated, cfg)
    imports_source = next((source for source, values in reversed(sources) if "IMPORTS" in values), "the defaults")
    _import_modules(cfg.IMPORTS, imports_source)
    cfg.freeze()
    return cfg


def _read_chain(path: str, included_by: str | None, visiting: tuple[str, ...]) -> list[tuple[str, dict]]:
    """``[(file, values), ...]`` for ``path`` and its bases, bases first (merge order), ``_BASE_`` removed."""
    values = _read_yaml(path, included_by)
    bases = values.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(base, str) for base in bases):
        raise ValueError(f"{BASE_KEY} in {path} must be a file name or a list of file names, got {bases!r}")
    chain: list[tuple[str, dict]] = []
    visiting = visiting + (os.path.abspath(path),)
    for base in bases:
        base_path = _resolve_base(base, path)
        if os.path.abspath(base_path) in visiting:
            cycle = " -> ".join(visiting + (base_path,))
            raise ValueError(f"{BASE_KEY} files include each other in a cycle: {cycle}")
        chain += _read_chain(base_path, included_by=path, visiting=visiting)
    chain.append((path, values))
    return chain


def _resolve_base(base: str, including_file: str) -> str:
    """The path fvcore opens for ``_BASE_: base`` written in ``including_file``."""
    if base.startswith("~"):
        return os.path.expanduser(base)
    if base.startswith(("/", "https://", "http://")):
        return base
    return os.path.join(os.path.dirname(including_file), base)


def _read_yaml(path: str, included_by: str | None) -> dict:
    try:
        with g_pathmgr.open(path, "r") as f:
            values = yaml.safe_load(f)
    except FileNotFoundError:
        where = f" (the {BASE_KEY} of {included_by})" if included_by else ""
        raise FileNotFoundError(f"config file not found: {path}{where}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"config file {path} is not valid YAML: {e}") from e
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a mapping of config keys, got {type(values).__name__}")
    return values


def _overrides_as_dict(opts: Sequence[Any]) -> dict:
    """``["A.B", v, ...]`` as nested ``{"A": {"B": v}}``, to be checked like a file."""
    if len(opts) % 2:
        raise ValueError(
            f"config overrides must be KEY VALUE pairs; got an odd number of items ({len(opts)}): {list(opts)}"
        )
    nested: dict = {}
    for key, value in zip(opts[0::2], opts[1::2]):
        if not isinstance(key, str):
            raise ValueError(f"config override keys must be strings like 'SOLVER.BASE_LR', got {key!r}")
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):  # "A.B" given a value, then "A.B.C"
                raise ValueError(f"config overrides set {key!r} inside a key that was given a value")
        node[leaf] = value
    return nested


def _check_values(values: dict, defaults: CfgNode, source: str) -> None:
    """Raise if ``values`` names a key missing from ``defaults`` or a value fvcore would reject."""
    unknown: list[str] = []
    mistyped: list[str] = []
    _collect_problems(values, defaults, "", unknown, mistyped)
    if unknown:
        all_keys = _all_keys(defaults)
        described = "; ".join(f"{key!r}{_suggestion(key, all_keys)}" for key in unknown)
        raise ConfigKeyError(f"unknown config key in {source}: {described}")
    if mistyped:
        raise ValueError(f"wrong value type in {source}: " + "; ".join(mistyped))


def _collect_problems(values: dict, defaults: CfgNode, prefix: str, unknown: list[str], mistyped: list[str]) -> None:
    for key, value in values.items():
        full_key = f"{prefix}{key}"
        if key not in defaults:
            unknown.append(full_key)
            continue
        default = defaults[key]
        if isinstance(default, CfgNode):
            if isinstance(value, dict):
                _collect_problems(value, default, f"{full_key}.", unknown, mistyped)
            else:
                mistyped.append(f"{full_key!r} is a section of keys, got {_describe(value)}")
            continue
        # fvcore parses string values as Python literals before comparing types
        decoded = CfgNode._decode_cfg_value(value)
        if not _same_kind(decoded, default):
            mistyped.append(
                f"{full_key!r} expects {type(default).__name__} (default {default!r}), "
                f"got {_describe(decoded)}{_hint(default, decoded)}"
            )


def _same_kind(value: Any, default: Any) -> bool:
    """fvcore's rule (equal types, or list and tuple), except that None is refused: no default is None."""
    if type(value) is type(default):
        return True
    return isinstance(value, (list, tuple)) and isinstance(default, (list, tuple))


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "an empty value (None)"
    return f"{type(value).__name__} {value!r}"


def _hint(default: Any, value: Any) -> str:
    if isinstance(default, float) and type(value) is int:
        return f" (write {float(value)!r} for a float)"
    if type(default) is int and isinstance(value, float) and value.is_integer():
        return f" (write {int(value)} for an int)"
    if isinstance(default, list) and not isinstance(value, (list, tuple, dict)) and value is not None:
        return f" (write [{value!r}] for a list)"
    if isinstance(default, str) and not isinstance(value, dict) and value is not None:
        return f" (strings that read as Python literals are converted; quote it twice: \"'{value}'\")"
    return ""


def _all_keys(node: CfgNode, prefix: str = "") -> list[str]:
    keys = []
    for key, value in node.items():
        keys.append(f"{prefix}{key}")
        if isinstance(value, CfgNode):
            keys += _all_keys(value, f"{prefix}{key}.")
    return keys


def _suggestion(key: str, all_keys: list[str]) -> str:
    """A close match: the same last name in another section first, else a similar spelling."""
    last = key.rsplit(".", 1)[-1]
    matches = [k for k in all_keys if k.rsplit(".", 1)[-1] == last]
    matches = matches or difflib.get_close_matches(key, all_keys, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(m) for m in matches[:3])}?)" if matches else ""


def _import_modules(modules: list, source: str) -> None:
    for module in modules:
        if not isinstance(module, str):
            raise ValueError(f"IMPORTS (set in {source}) must list module names, got {module!r}")
        try:
            importlib.import_module(module)
        except Exception as e:
            raise ImportError(
                f"cannot import {module!r} listed in IMPORTS (set in {source}): {type(e).__name__}: {e}"
            ) from e
