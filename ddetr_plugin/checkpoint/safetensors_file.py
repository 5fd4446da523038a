"""Weights as safetensors: a flat file of named tensors that loading parses and never unpickles.

``MODEL.WEIGHTS`` may name a ``.safetensors`` file (``load_checkpoint_file`` reads it here);
``tools/convert_checkpoint.py --to safetensors`` and training with ``SOLVER.SAVE_SAFETENSORS``
write one. Besides the state dict, the file's string metadata holds what rebuilds and names
the model: the full config YAML (``CONFIG_KEY``) and the class names (``CLASS_NAMES_KEY``,
a JSON list). Tensors that share memory (the heads one-stage models reuse across decoder
layers) are stored once per name, as safetensors requires.
"""
import json
import os
from typing import Any, Dict, Optional, Sequence

import yaml
from fvcore.common.config import CfgNode

from ..utils.file_io import atomic_write
from .checkpointer import CheckpointFormatError
from .renaming import StateDict

SUFFIX = ".safetensors"
CONFIG_KEY = "ddetr_plugin.config"
CLASS_NAMES_KEY = "ddetr_plugin.class_names"


class SafetensorsFormatError(CheckpointFormatError):
    """A file that is not a readable safetensors file (truncated, corrupt, or another format)."""


def is_safetensors_path(path: str) -> bool:
    return str(path).endswith(SUFFIX)


def _safetensors():
    try:
        import safetensors.torch
    except ImportError:
        raise ImportError("reading or writing .safetensors files needs the safetensors package: "
                          "pip install safetensors") from None
    return safetensors


def save_safetensors(
    path: str, state_dict: StateDict, *, config: Optional[str] = None, class_names: Optional[Sequence[str]] = None
) -> None:
    """Write ``state_dict`` (with the config YAML and class names as metadata) to ``path`` atomically."""
    safetensors = _safetensors()
    metadata = {"format": "pt"}
    if config is not None:
        metadata[CONFIG_KEY] = config
    if class_names is not None:
        metadata[CLASS_NAMES_KEY] = json.dumps([str(name) for name in class_names])
    # every entry gets its own contiguous copy: safetensors refuses tensors that share memory
    tensors = {key: value.detach().cpu().clone().contiguous() for key, value in state_dict.items()}
    data = safetensors.torch.save(tensors, metadata=metadata)
    atomic_write(path, lambda f: f.write(data))


def load_safetensors(path: str) -> Dict[str, Any]:
    """``{"model": state dict}`` of a safetensors file, plus "class_names" (list) and "config" (YAML text)
    when its metadata has them.

    Raises:
        FileNotFoundError: no such file.
        SafetensorsFormatError: the file is truncated or corrupt, or is not safetensors at all (e.g. a
            pickled torch checkpoint renamed ``.safetensors``); nothing in it was executed.
    """
    metadata, state_dict = _read(path, with_tensors=True)
    checkpoint: Dict[str, Any] = {"model": state_dict}
    if CLASS_NAMES_KEY in metadata:
        checkpoint["class_names"] = _class_names(metadata[CLASS_NAMES_KEY], path)
    if CONFIG_KEY in metadata:
        checkpoint["config"] = metadata[CONFIG_KEY]
    return checkpoint


def _read(path: str, with_tensors: bool) -> tuple[Dict[str, str], StateDict]:
    """(metadata, tensors or {}) of ``path``; the errors of ``load_safetensors``."""
    safetensors = _safetensors()
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint file not found: '{path}'")
    try:
        with safetensors.safe_open(path, framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()} if with_tensors else {}
    except Exception as e:  # the library's SafetensorError and header errors have no common base
        raise SafetensorsFormatError(
            f"cannot read '{path}' as safetensors ({type(e).__name__}: {e}). The file is truncated or corrupt, or "
            f"is not a safetensors file (a pickled .pth renamed .safetensors, say); it was not unpickled. Write "
            f"one with tools/convert_checkpoint.py --to safetensors."
        ) from None
    return metadata, tensors


def _class_names(text: str, path: str) -> list:
    try:
        names = json.loads(text)
    except json.JSONDecodeError:
        names = None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise SafetensorsFormatError(f"'{path}': metadata {CLASS_NAMES_KEY} must be a JSON list of strings, "
                                     f"got {text[:100]!r}")
    return names


def safetensors_config(path: str) -> CfgNode:
    """The config stored in ``path``'s metadata (frozen), with MODEL.WEIGHTS set to ``path``.

    Raises:
        SafetensorsFormatError: the file is unreadable or has no config in its metadata.
        ValueError: the stored config sets a deprecated key to a value the model cannot honour.
    """
    from ..config import get_cfg
    from ..config.deprecated import check_deprecated, pop_deprecated

    text = _read(path, with_tensors=False)[0].get(CONFIG_KEY)
    if text is None:
        raise SafetensorsFormatError(f"'{path}' has no config in its metadata ({CONFIG_KEY}); pass the YAML "
                                     f"that builds the model and MODEL.WEIGHTS {path}")
    values = yaml.safe_load(text)
    # files written before a key was deprecated hold it (the whole config is stored)
    deprecated = pop_deprecated(values, f"the config in the metadata of '{path}'")
    cfg = get_cfg()
    cfg.merge_from_other_cfg(CfgNode(values))
    check_deprecated(deprecated, cfg)
    cfg.MODEL.WEIGHTS = os.path.abspath(path)
    cfg.freeze()
    return cfg
