"""Checkpoints: safe loading and atomic saving (``Checkpointer``), and format converters."""
from .checkpointer import (
    CheckpointFormatError,
    Checkpointer,
    UnsafeCheckpointError,
    load_checkpoint_file,
)
from .hf import hf_to_ours, load_hf_directory, ours_to_hf, save_hf_directory
from .official import load_official_checkpoint, official_to_ours, ours_to_official

__all__ = [
    "CheckpointFormatError",
    "Checkpointer",
    "UnsafeCheckpointError",
    "load_checkpoint_file",
    "hf_to_ours",
    "load_hf_directory",
    "ours_to_hf",
    "save_hf_directory",
    "load_official_checkpoint",
    "official_to_ours",
    "ours_to_official",
]
