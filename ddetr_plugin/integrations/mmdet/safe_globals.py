"""The types mmengine's checkpoints pickle, allow-listed for ``torch.load(weights_only=True)``.

torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine 0.10 does not say otherwise,
so the checkpoints its own Runner writes fail to load (``load_from``, ``resume``, our converter):
the message hub holds ``HistoryBuffer`` objects with numpy arrays, and ``meta`` numpy scalars.
Exactly these are allowed, never ``weights_only=False``:

- ``mmengine.logging.history_buffer.HistoryBuffer``;
- numpy arrays and scalars of numeric dtypes: ``ndarray``, its ``_reconstruct`` and ``scalar``
  functions (under numpy 2's and numpy 1's module names, so files from either load), ``dtype``
  and the numeric dtype classes;
- ``getattr`` as pickled by a HistoryBuffer for its statistics methods (``getattr(HistoryBuffer,
  "mean")``): a stand-in that resolves only those and refuses any other attribute.
"""
import pickle
from typing import Any, Callable, List, Tuple, Union

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

_DEFAULT_STATISTICS = ("min", "max", "current", "mean")
# numeric dtypes by their character codes: bool, signed/unsigned integers, floats
_NUMERIC_TYPE_CODES = "?bBhHiIlLqQefd"


def history_buffer_attribute(owner: Any, name: str) -> Callable:
    """``getattr`` for unpickling: only a HistoryBuffer statistics method, e.g. ``HistoryBuffer.mean``."""
    registered = HistoryBuffer._statistics_methods.get(name)
    if owner is HistoryBuffer and (name in _DEFAULT_STATISTICS or registered is getattr(owner, name, None)):
        return getattr(owner, name)
    raise pickle.UnpicklingError(f"refusing getattr({owner!r}, {name!r}) while loading a checkpoint: only "
                                 f"HistoryBuffer's statistics methods are allowed")


def mmengine_checkpoint_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    """The allow-list, as ``torch.serialization.add_safe_globals`` takes it."""
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    allowed: List[Union[Callable, Tuple[Callable, str]]] = [HistoryBuffer, np.ndarray, np.dtype]
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        allowed += [(multiarray._reconstruct, f"{module}._reconstruct"), (multiarray.scalar, f"{module}.scalar")]
    allowed += sorted({type(np.dtype(code)) for code in _NUMERIC_TYPE_CODES}, key=lambda cls: cls.__name__)
    allowed.append((history_buffer_attribute, "builtins.getattr"))
    return allowed


def allow_mmengine_checkpoint_types() -> None:
    """Add ``mmengine_checkpoint_globals()`` to torch's safe globals (idempotent)."""
    torch.serialization.add_safe_globals(mmengine_checkpoint_globals())
