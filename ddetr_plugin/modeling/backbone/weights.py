"""Reading a backbone's pretrained weights from a local file (never downloaded) and loading them."""
import logging

import torch
from iopath.common.file_io import g_pathmgr
from torch import nn

logger = logging.getLogger(__name__)

# checkpoints written by training scripts often nest the state dict under one of these
WRAPPER_KEYS = ("model", "state_dict")


def read_state_dict(path: str, owner: str) -> dict[str, torch.Tensor]:
    """The tensors of the weights file ``path``, on the CPU.

    A ``.safetensors`` file is read with safetensors; any other file with ``torch.load(weights_only=True)``,
    which refuses pickled code. A plain state dict, or one under "model" or "state_dict", is accepted.

    Args:
        owner: the component reading the file, named in the errors (e.g. "ResNetBackbone").

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file does not hold a state dict.
    """
    try:
        with g_pathmgr.open(path, "rb") as f:
            if path.endswith(".safetensors"):
                state_dict = _load_safetensors(f.read(), owner)
            else:
                state_dict = torch.load(f, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{owner}: pretrained weights not found: {path}") from None
    if not isinstance(state_dict, dict):
        raise ValueError(f"{owner}: {path} holds a {type(state_dict).__name__}, not a state dict")
    for wrapper_key in WRAPPER_KEYS:
        if isinstance(state_dict.get(wrapper_key), dict):
            state_dict = state_dict[wrapper_key]
    return state_dict


def _load_safetensors(data: bytes, owner: str) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load
    except ImportError as e:
        raise ImportError(f"{owner}: reading .safetensors weights needs safetensors: pip install safetensors") from e
    return load(data)


def load_weights(module: nn.Module, state_dict: dict[str, torch.Tensor], path: str, owner: str, model: str):
    """``module.load_state_dict(state_dict, strict=False)``; missing keys are logged by name.

    Args:
        path, owner, model: the file, the component and the model it describes (e.g. "ResNet-50"), for messages.

    Returns:
        The ``(missing_keys, unexpected_keys)`` named tuple of ``load_state_dict``.

    Raises:
        RuntimeError: a tensor's shape differs from the module's, with the file and the model named.
    """
    try:
        incompatible = module.load_state_dict(state_dict, strict=False)
    except RuntimeError as e:
        raise RuntimeError(f"{owner}: weights in {path} do not fit {model}: {e}") from e
    if incompatible.missing_keys:
        logger.warning("Backbone weights %s lack: %s", path, ", ".join(incompatible.missing_keys))
    return incompatible
