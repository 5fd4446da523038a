"""PyTorch reference of multi-scale deformable attention.

Exactly ``grid_sample(mode="bilinear", padding_mode="zeros", align_corners=False)``
level by level, weighted by the attention weights and summed. Every native kernel
is tested against this function; it is also the path for devices and dtypes
without a kernel, and for ONNX export.
"""
import torch
import torch.nn.functional as F


def ms_deform_attn_pytorch(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Reference multi-scale deformable attention.

    Args:
        value: (N, S, M, D) with S = sum over levels of H_l * W_l.
        spatial_shapes: (L, 2) integer rows (H_l, W_l).
        level_start_index: (L,) first position of each level in S.
        sampling_locations: (N, Lq, M, L, P, 2) normalized (x, y); outside [0, 1] samples zeros.
        attention_weights: (N, Lq, M, L, P).

    Returns:
        (N, Lq, M * D).
    """
    batch, _, heads, channels = value.shape
    _, queries, _, _, points, _ = sampling_locations.shape
    shapes = spatial_shapes.tolist()
    starts = level_start_index.tolist()
    grids = 2 * sampling_locations - 1  # grid_sample wants [-1, 1]
    output = value.new_zeros(batch * heads, channels, queries)
    for level, (height, width) in enumerate(shapes):
        start = starts[level]
        # (N, H*W, M, D) -> (N*M, D, H, W)
        level_value = value[:, start : start + height * width].permute(0, 2, 3, 1)
        level_value = level_value.reshape(batch * heads, channels, height, width)
        # (N, Lq, M, P, 2) -> (N*M, Lq, P, 2)
        level_grid = grids[:, :, :, level].transpose(1, 2).reshape(batch * heads, queries, points, 2)
        sampled = F.grid_sample(
            level_value, level_grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )  # (N*M, D, Lq, P)
        weights = attention_weights[:, :, :, level].transpose(1, 2).reshape(batch * heads, 1, queries, points)
        output = output + (sampled * weights).sum(-1)
    return output.view(batch, heads * channels, queries).transpose(1, 2).contiguous()
