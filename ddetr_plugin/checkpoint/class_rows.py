"""Re-index the class heads of a state dict: keep the rows of some labels, in a given order.

Checkpoints in the ``category_id`` label space (the official and HF COCO models: 91 outputs,
one per COCO category id, unused ids included) predict label ``k`` for category id ``k``.
detectron2 and MMDetection number a dataset's categories 0..C-1 in increasing id order; a
class head whose rows are the category ids in that order predicts exactly those labels.
"""
from typing import Sequence

import torch

from .renaming import StateDict

# The 80 category ids of COCO 2017 (instances_{train,val}2017.json), in increasing order.
COCO_CATEGORY_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32,
    33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59,
    60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
)


def is_class_head_key(key: str) -> bool:
    """Whether ``key`` is a weight or bias of one of our class heads (``class_embed.{i}.*``)."""
    parts = key.split(".")
    return len(parts) == 3 and parts[0] == "class_embed" and parts[1].isdigit() and parts[2] in ("weight", "bias")


def select_class_rows(state_dict: StateDict, rows: Sequence[int]) -> StateDict:
    """``state_dict`` with every class head cut to ``rows`` (new label ``c`` = old label ``rows[c]``).

    Args:
        state_dict: our layout; class heads ``class_embed.{i}.weight`` (C, D) and ``.bias`` (C,).
        rows: old labels to keep, in the new order.

    Raises:
        ValueError: a row is outside a class head.
    """
    selected = {}
    for key, value in state_dict.items():
        if is_class_head_key(key):
            if max(rows, default=-1) >= value.shape[0] or min(rows, default=0) < 0:
                raise ValueError(f"{key} has {value.shape[0]} classes; cannot take rows {min(rows)}..{max(rows)}")
            value = value[torch.as_tensor(list(rows), dtype=torch.long)].clone()
        selected[key] = value
    return selected
