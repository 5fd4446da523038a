"""Two-stage Deformable DETR: every encoder position proposes a box.

Position (x, y) of level l proposes a box centred on its pixel (normalized to
the valid image) with side 0.05 * 2**l. Proposals are kept in logit space;
padded positions and proposals reaching within 0.01 of the image border are
disabled (their coordinates set to +inf and their memory to 0), as in the
official implementation. The top-scoring proposals become the decoder's
reference boxes and, through a sine embedding, its queries.

A disabled position still gets a finite score (that of a zero memory vector), so
in a heavily padded image it can be selected; its reference box is then
sigmoid(inf) = 1. The official code and HF transformers behave the same, and
parity with them decides, so this is kept.
"""
import math
from typing import Sequence

import torch


def encoder_output_proposals(
    memory: torch.Tensor,
    padding_mask: torch.Tensor,
    spatial_shapes: Sequence[tuple[int, int]],
    valid_sizes: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position proposals and the memory that scores them.

    Args:
        memory: (N, S, C) encoder output.
        padding_mask: (N, S) bool, True on padding.
        spatial_shapes: L pairs (H_l, W_l) as Python ints.
        valid_sizes: (N, L, 2) number of valid columns and rows (w, h) per level.

    Returns:
        memory (N, S, C) with disabled positions zeroed, and proposals (N, S, 4)
        as inverse-sigmoid cxcywh, +inf where disabled.
    """
    batch = memory.shape[0]
    device = memory.device
    per_level = []
    for level, (height, width) in enumerate(spatial_shapes):
        # arange equals the official's linspace(0, size - 1, size) and keeps the size symbolic under torch.export
        grid_y, grid_x = torch.meshgrid(
            torch.arange(height, dtype=torch.float32, device=device),
            torch.arange(width, dtype=torch.float32, device=device),
            indexing="ij",
        )
        grid = torch.stack([grid_x, grid_y], dim=-1)  # (H, W, 2)
        scale = valid_sizes[:, level].view(batch, 1, 1, 2)
        centres = (grid.unsqueeze(0) + 0.5) / scale
        sizes = torch.full_like(centres, 0.05 * (2.0**level))
        per_level.append(torch.cat([centres, sizes], dim=-1).view(batch, -1, 4))
    proposals = torch.cat(per_level, dim=1)
    usable = ((proposals > 0.01) & (proposals < 0.99)).all(dim=-1, keepdim=True)
    proposals = torch.log(proposals / (1 - proposals))
    disabled = padding_mask.unsqueeze(-1) | ~usable
    proposals = proposals.masked_fill(disabled, float("inf"))
    memory = memory.masked_fill(disabled, 0.0)
    return memory, proposals


def proposal_pos_embed(
    proposals: torch.Tensor, num_pos_feats: int = 128, temperature: float = 10000.0, scale: float = 2 * math.pi
) -> torch.Tensor:
    """Sine embedding of proposal boxes.

    Args:
        proposals: (N, K, 4) inverse-sigmoid cxcywh.
        num_pos_feats: features per coordinate (d_model / 2 so the result is 2 * d_model).

    Returns:
        (N, K, 4 * num_pos_feats): per coordinate, sin/cos interleaved over frequencies
        ``temperature ** (2 * (i // 2) / num_pos_feats)``.
    """
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=proposals.device)
    dim_t = temperature ** (2 * (dim_t // 2) / num_pos_feats)
    angles = proposals.sigmoid()[:, :, :, None] * scale / dim_t  # (N, K, 4, F)
    return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=4).flatten(2)
