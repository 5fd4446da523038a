"""The deformable encoder: post-norm layers of multi-scale deformable self-attention.

Every position of every level is a query; its reference point is its own pixel
centre, normalized to the valid (unpadded) part of its level and then mapped
onto each level through that level's valid ratio.
"""
import copy
from typing import Optional, Sequence

import torch
from torch import nn

from .mlp import get_activation
from .ms_deform_attn import MSDeformAttn


def encoder_reference_points(
    spatial_shapes: Sequence[tuple[int, int]], valid_ratios: torch.Tensor
) -> torch.Tensor:
    """Reference points of all encoder queries.

    Args:
        spatial_shapes: L pairs (H_l, W_l) as Python ints (no device read).
        valid_ratios: (N, L, 2) valid fraction (w, h) of each level.

    Returns:
        (N, S, L, 2) normalized (x, y): pixel centre / valid size of the query's
        own level, times each level's valid ratio.
    """
    device = valid_ratios.device
    per_level = []
    for level, (height, width) in enumerate(spatial_shapes):
        # pixel centres 0.5 .. size - 0.5 (the official's linspace, exactly); arange keeps the size
        # symbolic under torch.export, where linspace's step count would be fixed to the example's
        ref_y, ref_x = torch.meshgrid(
            torch.arange(height, dtype=torch.float32, device=device) + 0.5,
            torch.arange(width, dtype=torch.float32, device=device) + 0.5,
            indexing="ij",
        )
        ref_y = ref_y.reshape(1, -1) / (valid_ratios[:, None, level, 1] * height)
        ref_x = ref_x.reshape(1, -1) / (valid_ratios[:, None, level, 0] * width)
        per_level.append(torch.stack((ref_x, ref_y), dim=-1))
    reference_points = torch.cat(per_level, dim=1)
    return reference_points[:, :, None] * valid_ratios[:, None]


class DeformableTransformerEncoderLayer(nn.Module):
    """Deformable self-attention -> add & norm1 -> FFN -> add & norm2 (post-norm).

    Args:
        d_model: channels C.
        dim_feedforward: hidden size of the FFN.
        dropout: dropout after attention and in the FFN.
        activation: FFN activation name.
        num_levels, num_heads, num_points: of the deformable attention.
        backend: of the deformable attention op.
    """

    def __init__(
        self,
        d_model: int = 256,
        dim_feedforward: int = 1024,
        dropout: float = 0.1,
        activation: str = "relu",
        num_levels: int = 4,
        num_heads: int = 8,
        num_points: int = 4,
        backend: str = "auto",
    ):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, num_levels, num_heads, num_points, backend)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.activation = get_activation(activation)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(
        self,
        src: torch.Tensor,
        pos: torch.Tensor,
        reference_points: torch.Tensor,
        spatial_shapes: torch.Tensor,
        level_start_index: torch.Tensor,
        padding_mask: Optional[torch.Tensor] = None,
        record: Optional[list] = None,
    ) -> torch.Tensor:
        """(N, S, C) -> (N, S, C); ``reference_points`` (N, S, L, 2), ``padding_mask`` (N, S);
        ``record``: a list the attention appends its sampling to (see ``MSDeformAttn``)."""
        # The residual sums are added in place into tensors created here: over all S positions each fresh
        # buffer costs as much as the addition itself on CPU (autograd needs neither overwritten value).
        attended = self.self_attn(src + pos, reference_points, src, spatial_shapes, level_start_index, padding_mask,
                                  record=record)
        src = self.norm1(self.dropout1(attended).add_(src))
        hidden = self.dropout2(self.activation(self.linear1(src)))
        return self.norm2(self.dropout3(self.linear2(hidden)).add_(src))


class DeformableTransformerEncoder(nn.Module):
    """``num_layers`` copies of an encoder layer, stored as ``layers.i``."""

    def __init__(self, encoder_layer: DeformableTransformerEncoderLayer, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(encoder_layer) for _ in range(num_layers))
        self.num_layers = num_layers

    def forward(
        self,
        src: torch.Tensor,
        pos: torch.Tensor,
        spatial_shapes: torch.Tensor,
        level_start_index: torch.Tensor,
        valid_ratios: torch.Tensor,
        padding_mask: Optional[torch.Tensor] = None,
        shapes: Optional[Sequence[tuple[int, int]]] = None,
        record: Optional[list] = None,
    ) -> torch.Tensor:
        """Encode the flattened levels.

        Args:
            src: (N, S, C) flattened projected features.
            pos: (N, S, C) position + level embeddings.
            spatial_shapes: (L, 2) int64 (H_l, W_l), passed unchanged to every layer.
            level_start_index: (L,) int64.
            valid_ratios: (N, L, 2) valid fraction (w, h) per level.
            padding_mask: (N, S) bool, True on padding.
            shapes: ``spatial_shapes`` as Python ints; read from the tensor when omitted.
            record: when a list, each layer appends the sampling its attention used (``MSDeformAttn``).

        Returns:
            memory (N, S, C).
        """
        if shapes is None:
            shapes = [tuple(shape) for shape in spatial_shapes.tolist()]
        # computed once and shared by all layers
        reference_points = encoder_reference_points(shapes, valid_ratios)
        output = src
        for layer in self.layers:
            output = layer(output, pos, reference_points, spatial_shapes, level_start_index, padding_mask, record)
        return output
