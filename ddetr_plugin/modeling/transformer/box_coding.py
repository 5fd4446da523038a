"""Boxes as deltas in logit space around reference points.

Deformable DETR predicts a box as ``sigmoid(delta + inverse_sigmoid(reference))``:
the heads and the iterative refinement both use this parametrisation, with a
4-d reference box (cx, cy, w, h) or a 2-d reference point (cx, cy) whose size
comes from the delta alone.
"""
import torch


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``log(x / (1 - x))`` with x clamped to [0, 1] and both terms to at least ``eps``.

    The clamping keeps references that saturated at 0 or 1 finite, as the official code does.
    """
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def apply_box_delta(delta: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Normalized cxcywh boxes from logit-space deltas around references.

    Args:
        delta: (..., 4) raw output of a box head.
        reference: (..., 4) reference boxes or (..., 2) reference points, in [0, 1].

    Returns:
        (..., 4) ``sigmoid(delta + inverse_sigmoid(reference))``, where a 2-d
        reference shifts only the centre.
    """
    if reference.shape[-1] == 4:
        return (delta + inverse_sigmoid(reference)).sigmoid()
    if reference.shape[-1] != 2:
        raise ValueError(f"reference must end in 2 (cx, cy) or 4 (cx, cy, w, h), got shape {tuple(reference.shape)}")
    centre = delta[..., :2] + inverse_sigmoid(reference)
    return torch.cat([centre, delta[..., 2:]], dim=-1).sigmoid()
