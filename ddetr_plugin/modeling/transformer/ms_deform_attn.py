"""The multi-scale deformable attention module (Zhu et al., Eq. 3).

Each query predicts, per head, ``num_levels * num_points`` sampling offsets around
its reference point and one attention weight per sample (a softmax over all
levels and points of that head); the op bilinearly samples the projected value
maps at those locations and sums them with the weights.
"""
import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ddetr_plugin.ops import multi_scale_deformable_attention


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention over flattened feature levels.

    Parameter names (``sampling_offsets``, ``attention_weights``, ``value_proj``,
    ``output_proj``) follow the official checkpoints.

    Args:
        d_model: channels of queries and values.
        num_levels: number of feature levels L.
        num_heads: attention heads M; ``d_model`` must divide by it.
        num_points: sampling points P per head and level.
        backend: op backend, "auto", "native", "triton" or "pytorch".
    """

    def __init__(
        self,
        d_model: int = 256,
        num_levels: int = 4,
        num_heads: int = 8,
        num_points: int = 4,
        backend: str = "auto",
    ):
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError(f"MSDeformAttn: d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        self.d_model = d_model
        self.num_levels = num_levels
        self.num_heads = num_heads
        self.num_points = num_points
        self.backend = backend
        self.sampling_offsets = nn.Linear(d_model, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(d_model, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official initialisation.

        Offsets start as a fixed pattern: head h points in direction
        2*pi*h/M, scaled so the larger of |cos|, |sin| is 1, and point p
        lies (p + 1) pixels along it on every level; attention starts uniform.
        """
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        directions = torch.stack([angles.cos(), angles.sin()], dim=-1)
        directions = directions / directions.abs().max(dim=-1, keepdim=True).values
        distance = torch.arange(1, self.num_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        grid = directions.view(self.num_heads, 1, 1, 2) * distance  # (M, 1, P, 2)
        grid = grid.expand(self.num_heads, self.num_levels, self.num_points, 2)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        input_flatten: torch.Tensor,
        spatial_shapes: torch.Tensor,
        level_start_index: torch.Tensor,
        input_padding_mask: Optional[torch.Tensor] = None,
        record: Optional[list] = None,
    ) -> torch.Tensor:
        """Attend from each query around its reference point.

        Args:
            query: (N, Lq, C), with the positional embedding already added.
            reference_points: (N, Lq, L, 2) points (x, y) or (N, Lq, L, 4) boxes
                (cx, cy, w, h), normalized to each padded level (already scaled by
                the valid ratios).
            input_flatten: (N, S, C) the flattened levels, S = sum of H_l * W_l.
            spatial_shapes: (L, 2) int64 rows (H_l, W_l).
            level_start_index: (L,) int64 first position of each level in S.
            input_padding_mask: (N, S) bool, True on padding; those values read as 0.
            record: when a list, ``{"sampling_locations": (N, Lq, M, L, P, 2), "attention_weights":
                (N, Lq, M, L, P)}``, the very tensors the op consumes, is appended to it (for
                inspection; None, the default, keeps no reference to them).

        Returns:
            (N, Lq, C).
        """
        batch, num_queries, _ = query.shape
        num_inputs = input_flatten.shape[1]
        heads, levels, points = self.num_heads, self.num_levels, self.num_points

        value = self.value_proj(input_flatten)
        if input_padding_mask is not None:
            if value.requires_grad:
                # Out of place: the 3-D projection output is a view of a 2-D matmul result, and an
                # in-place write through a view makes autograd copy the whole gradient (CopySlices).
                value = value.masked_fill(input_padding_mask[..., None], 0.0)
            else:
                value.masked_fill_(input_padding_mask[..., None], 0.0)
        value = value.view(batch, num_inputs, heads, self.d_model // heads)

        offsets = self.sampling_offsets(query).view(batch, num_queries, heads, levels, points, 2)
        weights = self.attention_weights(query).view(batch, num_queries, heads, levels * points)
        weights = F.softmax(weights, dim=-1).view(batch, num_queries, heads, levels, points)

        if reference_points.shape[-1] == 2:
            # offsets are in pixels of each level: ref + offsets / (W_l, H_l), in one pass. The points
            # and (x, y) dims are merged into one inner dim of 2P (reference and normalizer repeated
            # P times): broadcasting over an inner dim of 2 is several times slower (same values).
            normalizer = spatial_shapes.flip(-1).to(offsets.dtype).repeat(1, points)  # (L, 2P)
            sampling_locations = torch.addcdiv(
                reference_points.repeat(1, 1, 1, points)[:, :, None],  # (N, Lq, 1, L, 2P)
                offsets.view(batch, num_queries, heads, levels, points * 2),
                normalizer,
            ).view(batch, num_queries, heads, levels, points, 2)
        elif reference_points.shape[-1] == 4:
            # offsets are fractions of the half box size, spread over the points
            sampling_locations = (
                reference_points[:, :, None, :, None, :2]
                + offsets / points * reference_points[:, :, None, :, None, 2:] * 0.5
            )
        else:
            raise ValueError(
                "MSDeformAttn: reference_points must be (N, Lq, L, 2) or (N, Lq, L, 4), "
                f"got shape {tuple(reference_points.shape)}"
            )
        sampling_locations, weights = sampling_locations.to(value.dtype), weights.to(value.dtype)
        if record is not None:
            record.append({"sampling_locations": sampling_locations, "attention_weights": weights})
        output = multi_scale_deformable_attention(
            value,
            spatial_shapes,
            level_start_index,
            sampling_locations,
            weights,
            backend=self.backend,
        )
        return self.output_proj(output)
