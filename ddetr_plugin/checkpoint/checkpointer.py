"""Loading and saving checkpoints safely: ``Checkpointer(model).load(path)``.

A checkpoint file is a dict whose "model" entry is the state dict; training
checkpoints add "optimizer", "scheduler", "iteration", RNG states, etc.

Loading never runs code from the file: every load is ``torch.load(weights_only=True)``
and the only non-tensor class allowed is ``argparse.Namespace`` (the official
repository stores its command line under "args"). A file that pickles anything
else (a function call, a custom class) is refused with :class:`UnsafeCheckpointError`
before that code can run.

Saving is atomic: the data goes to a temporary file in the same directory, is
flushed to disk, then renamed over the target, and ``last_checkpoint`` is
updated the same way afterwards. A crash at any point leaves the previous
checkpoint and the ``last_checkpoint`` that names it intact. A state with
non-finite floating-point tensors is never written.

Paths are local files (atomic rename needs a local filesystem); ``load`` also
accepts anything iopath resolves to a local path.
"""
import argparse
import logging
import os
import pickle
import re
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

import torch
from fvcore.common.checkpoint import Checkpointer as _FvcoreCheckpointer
from fvcore.common.checkpoint import (
    _filter_reused_missing_keys,
    get_missing_parameters_message,
    get_unexpected_parameters_message,
)
from torch import nn

from ..utils.file_io import atomic_write

logger = logging.getLogger(__name__)

LAST_CHECKPOINT_FILE = "last_checkpoint"
# The only classes a checkpoint may pickle besides tensors and plain containers.
SAFE_GLOBALS = [argparse.Namespace]
_CLASS_HEAD = re.compile(r"(^|\.)class_embed\.\d+\.(weight|bias)$")


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint that needs code to load (pickled functions or classes); it was not loaded."""


class CheckpointFormatError(ValueError):
    """A checkpoint file that is not a dict with a "model" state dict, or that cannot be read."""


def load_checkpoint_file(path: str) -> Dict[str, Any]:
    """Read ``path`` with ``torch.load(weights_only=True)`` on the CPU, refusing pickled code; a
    ``.safetensors`` file is parsed as safetensors instead, never unpickled (``safetensors_file``).

    Raises:
        UnsafeCheckpointError: the file pickles something other than tensors, plain containers,
            numbers, strings and ``argparse.Namespace``; nothing in it was executed.
        CheckpointFormatError: the file is truncated, corrupt or not a torch (or safetensors) checkpoint.
    """
    from .safetensors_file import is_safetensors_path, load_safetensors  # it imports this module

    if is_safetensors_path(path):
        return load_safetensors(path)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        refused = [line.strip() for line in str(e).splitlines() if "GLOBAL" in line]
        detail = f" ({refused[0]})" if refused else ""
        raise UnsafeCheckpointError(
            f"refusing to load checkpoint '{path}': it contains pickled code or objects that are not plain "
            f"weights{detail}. Loading it could run arbitrary code, so it was not loaded. Use a checkpoint "
            f"saved by ddetr_plugin or converted with tools/convert_checkpoint.py, or re-save only the state "
            f"dict from a trusted environment: torch.save({{'model': model.state_dict()}}, path)."
        ) from None
    except (RuntimeError, EOFError, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise CheckpointFormatError(
            f"cannot read checkpoint '{path}' (truncated, corrupt or not a torch checkpoint): {e}"
        ) from e


def state_dict_entry(checkpoint: Any, entries: Tuple[str, ...], what: str) -> Dict[str, torch.Tensor]:
    """The state dict of a checkpoint dict: its first entry among ``entries`` that is a mapping, or the
    dict itself when it holds tensors only (a bare state dict). ``what`` names the file in errors.

    Raises:
        ValueError: not a dict, or neither such an entry nor a bare state dict.
    """
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{what} is a dict, got {type(checkpoint).__name__}")
    for entry in entries:
        if isinstance(checkpoint.get(entry), Mapping):
            return dict(checkpoint[entry])
    if checkpoint and all(isinstance(value, torch.Tensor) for value in checkpoint.values()):
        return dict(checkpoint)
    wanted = " or ".join(repr(entry) for entry in entries)
    raise ValueError(f"{what} has a {wanted} state dict; found keys {sorted(checkpoint)[:10]}")


def non_finite_tensors(data: Any, prefix: str = "") -> Iterator[str]:
    """Names (dotted paths) of the floating-point tensors in ``data`` holding NaN or infinity."""
    if isinstance(data, torch.Tensor):
        if data.is_floating_point() and not torch.isfinite(data).all():
            yield prefix or "<tensor>"
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from non_finite_tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(data, (list, tuple)):
        for index, value in enumerate(data):
            yield from non_finite_tensors(value, f"{prefix}.{index}" if prefix else str(index))




class Checkpointer(_FvcoreCheckpointer):
    """fvcore's Checkpointer with safe loading, atomic saving, clear mismatch reports and keep-last-N.

    Args:
        model: the model (a DDP/DataParallel wrapper is unwrapped).
        save_dir: directory of the checkpoints and ``last_checkpoint``; "" disables saving.
        save_to_disk: whether this process writes files (usually only the main process).
        max_to_keep: keep only the newest this many periodic checkpoints ``<prefix>_<iteration>.pth``
            (decided from the files in ``save_dir``, so it holds across resumes); None or 0 keeps all.
            ``<prefix>_final.pth`` and other names are never removed.
        periodic_prefix: the prefix of periodic checkpoint names.
        checkpointables: objects with ``state_dict()``/``load_state_dict()`` saved beside the model
            (optimizer, scheduler, ...).

    ``load(path)`` returns the entries of the file it did not consume (e.g. "iteration").
    """

    def __init__(
        self,
        model: nn.Module,
        save_dir: str = "",
        *,
        save_to_disk: bool = True,
        max_to_keep: Optional[int] = None,
        periodic_prefix: str = "model",
        **checkpointables: Any,
    ) -> None:
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.logger = logger
        self.max_to_keep = max_to_keep or None
        self.periodic_prefix = periodic_prefix
        self._loading: str = ""

    # ------------------------------------------------------------------ loading
    def load(self, path: str, checkpointables: Optional[List[str]] = None) -> Dict[str, Any]:
        """Load the model (and the named checkpointables; None: all found in the file) from ``path``.

        Raises:
            FileNotFoundError, UnsafeCheckpointError, CheckpointFormatError.
        """
        if path and not os.path.isfile(path):
            local = self.path_manager.get_local_path(path) if "://" in path else path
            if not os.path.isfile(local):
                raise FileNotFoundError(f"checkpoint file not found: '{path}'")
            path = local
        self._loading = path
        try:
            return super().load(path, checkpointables=checkpointables)
        finally:
            self._loading = ""

    def _load_file(self, f: str) -> Dict[str, Any]:
        checkpoint = load_checkpoint_file(f)
        if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
            found = f"a dict with keys {sorted(map(str, checkpoint))[:10]}" if isinstance(checkpoint, dict) \
                else type(checkpoint).__name__
            raise CheckpointFormatError(
                f"checkpoint '{f}' must be a dict whose 'model' entry is the state dict; found {found}. "
                f"Official or HF weights: convert them with tools/convert_checkpoint.py; a bare state dict: "
                f"save it as {{'model': state_dict}}."
            )
        return checkpoint

    def _log_incompatible_keys(self, incompatible) -> None:
        """One warning per shape mismatch (with a fix for the class head), then missing/unexpected keys."""
        class_head = [entry for entry in incompatible.incorrect_shapes if _CLASS_HEAD.search(entry[0])]
        for key, shape_checkpoint, shape_model in incompatible.incorrect_shapes:
            self.logger.warning(
                "Not loading '%s' from %s: shape %s in the checkpoint, %s in the model",
                key, self._loading or "the checkpoint", tuple(shape_checkpoint), tuple(shape_model),
            )
        if class_head:
            self.logger.warning(class_head_mismatch_message(class_head))
        if incompatible.missing_keys:
            missing = _filter_reused_missing_keys(self.model, incompatible.missing_keys)
            if missing:
                self.logger.warning(get_missing_parameters_message(sorted(missing)))
        if incompatible.unexpected_keys:
            self.logger.warning(get_unexpected_parameters_message(sorted(incompatible.unexpected_keys)))

    # ------------------------------------------------------------------ saving
    def save(self, name: str, *, tag_last: bool = True, **kwargs: Any) -> None:
        """Write ``save_dir/<name>.pth`` atomically and (``tag_last``) point ``last_checkpoint`` at it.

        Raises:
            FloatingPointError: some tensor to be saved holds NaN or infinity; nothing is written.
        """
        if not self.save_dir or not self.save_to_disk:
            return
        data: Dict[str, Any] = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        bad = list(non_finite_tensors(data))
        if bad:
            shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
            raise FloatingPointError(
                f"refusing to save checkpoint '{name}.pth': non-finite values (NaN or inf) in {shown}. "
                f"Training diverged; the previous checkpoint is left as it was."
            )
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", save_file)
        atomic_write(save_file, lambda f: torch.save(data, f))
        if tag_last:
            self.tag_last_checkpoint(basename)
        if self.max_to_keep:
            self._remove_old_periodic_checkpoints()

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Atomically write ``last_checkpoint`` = the name of the newest checkpoint."""
        atomic_write(
            os.path.join(self.save_dir, LAST_CHECKPOINT_FILE), lambda f: f.write(last_filename_basename), binary=False
        )

    def periodic_checkpoints(self) -> List[Tuple[int, str]]:
        """``(iteration, path)`` of the periodic checkpoints in ``save_dir``, oldest first."""
        pattern = re.compile(rf"^{re.escape(self.periodic_prefix)}_(\d+)\.pth$")
        found = []
        for name in os.listdir(self.save_dir) if os.path.isdir(self.save_dir) else []:
            match = pattern.match(name)
            if match:
                found.append((int(match.group(1)), os.path.join(self.save_dir, name)))
        return sorted(found)

    def _remove_old_periodic_checkpoints(self) -> None:
        last = os.path.abspath(self.get_checkpoint_file())
        periodic = self.periodic_checkpoints()
        for _, path in periodic[: max(len(periodic) - self.max_to_keep, 0)]:
            if os.path.abspath(path) != last:  # never the one last_checkpoint names
                self.logger.info("Removing old checkpoint %s (SOLVER.MAX_TO_KEEP %d)", path, self.max_to_keep)
                os.remove(path)


def class_head_mismatch_message(mismatches: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]]) -> str:
    """How to resolve a class-head (``class_embed.*``) shape mismatch, e.g. 91 COCO classes vs 2."""
    key, shape_checkpoint, shape_model = mismatches[0]
    checkpoint_classes, model_classes = shape_checkpoint[0], shape_model[0]
    keys = ", ".join(sorted(entry[0] for entry in mismatches))
    return (
        f"The class head does not match: the checkpoint has {checkpoint_classes} classes, the model "
        f"{model_classes} (MODEL.NUM_CLASSES). {keys} were NOT loaded and keep their initialisation. "
        f"To use the checkpoint's classes, set MODEL.NUM_CLASSES {checkpoint_classes}. To fine-tune on your "
        f"{model_classes} classes, this is expected: the class head is trained from scratch while every other "
        f"weight comes from the checkpoint (to silence this, drop the class_embed.* entries from the "
        f"checkpoint's 'model' dict)."
    )
