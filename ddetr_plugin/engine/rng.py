"""Capturing and restoring every random generator the training loop draws from.

The state is made of tensors, ints and tuples only, so checkpoints holding it
still load with ``torch.load(weights_only=True)``: NumPy's key array is stored
as an int64 tensor.
"""
import random
from contextlib import contextmanager
from typing import Any, Dict, Iterator

import numpy as np
import torch


def get_rng_state() -> Dict[str, Any]:
    """Python ``random``, NumPy's global generator, torch CPU and (when available) every CUDA device."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state: Dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss),
                  float(cached_gaussian)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore a state from :func:`get_rng_state` (CUDA states only where this process has CUDA)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def preserved_rng_state() -> Iterator[None]:
    """Run the block without changing any generator's state as seen after it.

    Work that is not part of the training trajectory (building a data loader
    iterator, which draws its base seed from torch's generator; evaluation)
    goes inside, so a resumed run draws exactly what an uninterrupted one draws.
    """
    state = get_rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def seed_all(seed: int) -> None:
    """Seed Python ``random``, NumPy and torch (all devices) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
