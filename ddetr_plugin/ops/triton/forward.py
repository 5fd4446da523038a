"""Forward Triton kernel of multi-scale deformable attention.

One program owns BLOCK_ROWS rows r = (n * Lq + q) * M + m of the output (N, Lq, M, D), each
with all D channels in one BLOCK_CHANNELS-wide tile (a power of two, padding channels masked).
For every level and point it computes the bilinear footprint once per row and gathers the four
neighbouring D-channel rows of value, so the location arithmetic is shared by all channels.
"""
import triton
import triton.language as tl

from .sampling import bilinear_footprint, load_corner, load_level, load_sample, program_rows, to_compute_dtype


@triton.jit
def ms_deform_attn_forward_kernel(
    value_ptr,  # (N, S, M, D) contiguous
    shapes_ptr,  # (L, 2) int64 rows (H_l, W_l)
    starts_ptr,  # (L,) int64
    locations_ptr,  # (N, Lq, M, L, P, 2) contiguous
    weights_ptr,  # (N, Lq, M, L, P) contiguous
    output_ptr,  # (N, Lq, M, D) contiguous, written
    rows,  # N * Lq * M
    queries_heads,  # Lq * M
    positions,  # S
    heads,  # M
    channels,  # D
    levels,  # L
    points,  # P
    BLOCK_ROWS: tl.constexpr,
    BLOCK_CHANNELS: tl.constexpr,
    FP64: tl.constexpr,
):
    row, row_mask, channel, channel_mask, position_stride, value_rows = program_rows(
        rows, queries_heads, positions, heads, channels, BLOCK_ROWS, BLOCK_CHANNELS)
    acc = to_compute_dtype(tl.zeros((BLOCK_ROWS, BLOCK_CHANNELS), dtype=tl.float32), FP64)
    for level in range(levels):
        height, width, start = load_level(shapes_ptr, starts_ptr, level)
        for point in range(points):
            loc_x, loc_y, weight = load_sample(locations_ptr, weights_ptr, (row * levels + level) * points + point,
                                               row_mask, FP64)
            (top_left, top_right, bottom_left, bottom_right,
             top_left_in, top_right_in, bottom_left_in, bottom_right_in, fx, fy) = bilinear_footprint(
                loc_x, loc_y, height, width, start, value_rows, position_stride, row_mask)
            gx = 1.0 - fx
            gy = 1.0 - fy
            acc += (weight * gy * gx)[:, None] * load_corner(value_ptr, top_left, top_left_in, channel, channel_mask,
                                                             FP64)
            acc += (weight * gy * fx)[:, None] * load_corner(value_ptr, top_right, top_right_in, channel, channel_mask,
                                                             FP64)
            acc += (weight * fy * gx)[:, None] * load_corner(value_ptr, bottom_left, bottom_left_in, channel,
                                                             channel_mask, FP64)
            acc += (weight * fy * fx)[:, None] * load_corner(value_ptr, bottom_right, bottom_right_in, channel,
                                                             channel_mask, FP64)
    tl.store(output_ptr + row[:, None] * channels + channel[None, :], acc.to(output_ptr.dtype.element_ty),
             mask=row_mask[:, None] & channel_mask[None, :])
