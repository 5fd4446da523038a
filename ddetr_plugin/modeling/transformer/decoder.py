"""The deformable decoder: self-attention among queries, then deformable
cross-attention into the encoder memory around each query's reference.

With iterative box refinement, layer l's box head predicts a delta that moves
the reference box for layer l + 1; the new reference is detached, so each
layer's box loss trains only that layer's prediction (official behaviour).
"""
import copy
from typing import NamedTuple, Optional, Sequence

import torch
from torch import nn

from .box_coding import apply_box_delta
from .mlp import get_activation
from .ms_deform_attn import MSDeformAttn


class DecoderOutput(NamedTuple):
    """What the decoder returns.

    hidden_states: (D, N, Q, C) output of every layer.
    reference_points: D tensors (N, Q, 2) or (N, Q, 4): the reference each layer
        attended around (normalized to the valid image); layer l's head predicts
        its boxes relative to ``reference_points[l]``.
    """

    hidden_states: torch.Tensor
    reference_points: list[torch.Tensor]


class DeformableTransformerDecoderLayer(nn.Module):
    """Self-attention -> norm2 -> deformable cross-attention -> norm1 -> FFN -> norm3 (post-norm).

    The numbering of the norms follows the official checkpoints.

    Args:
        d_model: channels C.
        dim_feedforward: hidden size of the FFN.
        dropout: dropout after each block, in the FFN and in the self-attention weights.
        activation: FFN activation name.
        num_levels, num_heads, num_points: of the deformable cross-attention (num_heads
            also for the self-attention).
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
        self.cross_attn = MSDeformAttn(d_model, num_levels, num_heads, num_points, backend)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.self_attn = nn.MultiheadAttention(d_model, num_heads, dropout=dropout, batch_first=True)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.activation = get_activation(activation)
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(
        self,
        target: torch.Tensor,
        query_pos: torch.Tensor,
        reference_points: torch.Tensor,
        memory: torch.Tensor,
        spatial_shapes: torch.Tensor,
        level_start_index: torch.Tensor,
        memory_padding_mask: Optional[torch.Tensor] = None,
        record: Optional[list] = None,
    ) -> torch.Tensor:
        """Update the queries.

        Args:
            target: (N, Q, C) query contents.
            query_pos: (N, Q, C) query positional embeddings (added to q and k, not v).
            reference_points: (N, Q, L, 2|4) per-level references (scaled by the valid ratios).
            memory: (N, S, C) encoder output.
            spatial_shapes: (L, 2) int64; level_start_index: (L,) int64.
            memory_padding_mask: (N, S) bool, True on padding.
            record: a list the cross-attention appends its sampling to (see ``MSDeformAttn``).

        Returns:
            (N, Q, C).
        """
        query_key = target + query_pos
        attended = self.self_attn(query_key, query_key, target, need_weights=False)[0]
        target = self.norm2(target + self.dropout2(attended))
        attended = self.cross_attn(
            target + query_pos, reference_points, memory, spatial_shapes, level_start_index, memory_padding_mask,
            record=record,
        )
        target = self.norm1(target + self.dropout1(attended))
        hidden = self.dropout3(self.activation(self.linear1(target)))
        return self.norm3(target + self.dropout4(self.linear2(hidden)))


class DeformableTransformerDecoder(nn.Module):
    """``num_layers`` copies of a decoder layer, stored as ``layers.i``; returns every layer's output."""

    def __init__(self, decoder_layer: DeformableTransformerDecoderLayer, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(decoder_layer) for _ in range(num_layers))
        self.num_layers = num_layers

    def forward(
        self,
        target: torch.Tensor,
        query_pos: torch.Tensor,
        reference_points: torch.Tensor,
        memory: torch.Tensor,
        spatial_shapes: torch.Tensor,
        level_start_index: torch.Tensor,
        valid_ratios: torch.Tensor,
        memory_padding_mask: Optional[torch.Tensor] = None,
        bbox_embed: Optional[Sequence[nn.Module]] = None,
        record: Optional[list] = None,
    ) -> DecoderOutput:
        """Run all layers.

        Args:
            target: (N, Q, C) initial query contents.
            query_pos: (N, Q, C) query positional embeddings.
            reference_points: (N, Q, 2) points or (N, Q, 4) boxes in [0, 1], relative
                to the valid image.
            memory: (N, S, C) encoder output.
            spatial_shapes: (L, 2) int64; level_start_index: (L,) int64.
            valid_ratios: (N, L, 2) valid fraction (w, h) per level.
            memory_padding_mask: (N, S) bool, True on padding.
            bbox_embed: one box head per layer for iterative refinement, or None
                (references stay fixed). Modules are used, not owned: they belong
                to the caller (the detector's ``bbox_embed``).
            record: when a list, each layer appends the sampling of its cross-attention (``MSDeformAttn``).

        Returns:
            DecoderOutput(hidden_states (D, N, Q, C), reference_points: D tensors).
        """
        if bbox_embed is not None and len(bbox_embed) < self.num_layers:
            raise ValueError(
                f"box refinement needs one box head per decoder layer ({self.num_layers}), got {len(bbox_embed)}"
            )
        # a box (cx, cy, w, h) scales as two points
        valid_ratios_box = torch.cat([valid_ratios, valid_ratios], dim=-1)
        output = target
        hidden_states = []
        references = []
        for index, layer in enumerate(self.layers):
            ratios = valid_ratios_box if reference_points.shape[-1] == 4 else valid_ratios
            level_references = reference_points[:, :, None] * ratios[:, None]
            output = layer(
                output, query_pos, level_references, memory, spatial_shapes, level_start_index, memory_padding_mask,
                record,
            )
            hidden_states.append(output)
            references.append(reference_points)
            if bbox_embed is not None:
                reference_points = apply_box_delta(bbox_embed[index](output), reference_points).detach()
        return DecoderOutput(torch.stack(hidden_states), references)
