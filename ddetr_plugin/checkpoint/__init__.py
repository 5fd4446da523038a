"""Checkpoints: safe loading and atomic saving (``Checkpointer``), and format converters."""
from .checkpointer import (
    CheckpointFormatError,
    Checkpointer,
    UnsafeCheckpointError,
    load_checkpoint_file,
)

__all__ = ["CheckpointFormatError", "Checkpointer", "UnsafeCheckpointError", "load_checkpoint_file"]
