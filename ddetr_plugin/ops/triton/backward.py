"""Backward Triton kernel of multi-scale deformable attention.

The same decomposition as the forward kernel: one program owns BLOCK_ROWS rows
r = (n * Lq + q) * M + m with all D channels in one tile, and loops over levels and points.

- grad of attention_weights[r, l, p] = sum_d grad_output[r, d] * sample[r, d];
- grad of sampling_locations[r, l, p] = W_l (resp. H_l) times sum_d weight * grad_output[r, d]
  * d sample[r, d] / d fx (resp. fy).
Both are sums over the channels of one row, so the program reduces its own tile and writes
each result once: no atomics, no cross-program reduction. Only grad_value is scattered (to the
four neighbours of every point, which many queries share) with atomic adds into a buffer of
the compute dtype (float32 for float16/bfloat16), so it is not bitwise deterministic: the
order of the additions varies from run to run.
"""
import triton
import triton.language as tl

from .sampling import bilinear_footprint, load_corner, load_level, load_sample, program_rows, to_compute_dtype


@triton.jit
def scatter_corner(grad_value_ptr, offsets, inside, channel, channel_mask, contribution):
    """grad_value[offsets[:, None] + channel] += contribution (BLOCK_ROWS, BLOCK_CHANNELS), atomically.

    Relaxed ordering: the additions only need to all land, in any order, before the kernel ends."""
    tl.atomic_add(grad_value_ptr + offsets[:, None] + channel[None, :], contribution,
                  mask=inside[:, None] & channel_mask[None, :], sem="relaxed")


@triton.jit
def ms_deform_attn_backward_kernel(
    value_ptr,  # (N, S, M, D) contiguous
    shapes_ptr,  # (L, 2) int64 rows (H_l, W_l)
    starts_ptr,  # (L,) int64
    locations_ptr,  # (N, Lq, M, L, P, 2) contiguous
    weights_ptr,  # (N, Lq, M, L, P) contiguous
    grad_output_ptr,  # (N, Lq, M, D) contiguous
    grad_value_ptr,  # (N, S, M, D) compute dtype, zero-initialised, accumulated
    grad_locations_ptr,  # (N, Lq, M, L, P, 2), written
    grad_weights_ptr,  # (N, Lq, M, L, P), written
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
    grad_output = to_compute_dtype(
        tl.load(grad_output_ptr + row[:, None] * channels + channel[None, :],
                mask=row_mask[:, None] & channel_mask[None, :], other=0.0), FP64)
    for level in range(levels):
        height, width, start = load_level(shapes_ptr, starts_ptr, level)
        for point in range(points):
            sample = (row * levels + level) * points + point
            loc_x, loc_y, weight = load_sample(locations_ptr, weights_ptr, sample, row_mask, FP64)
            (top_left, top_right, bottom_left, bottom_right,
             top_left_in, top_right_in, bottom_left_in, bottom_right_in, fx, fy) = bilinear_footprint(
                loc_x, loc_y, height, width, start, value_rows, position_stride, row_mask)
            gx = 1.0 - fx
            gy = 1.0 - fy
            v_top_left = load_corner(value_ptr, top_left, top_left_in, channel, channel_mask, FP64)
            v_top_right = load_corner(value_ptr, top_right, top_right_in, channel, channel_mask, FP64)
            v_bottom_left = load_corner(value_ptr, bottom_left, bottom_left_in, channel, channel_mask, FP64)
            v_bottom_right = load_corner(value_ptr, bottom_right, bottom_right_in, channel, channel_mask, FP64)

            sampled = (gy * gx)[:, None] * v_top_left + (gy * fx)[:, None] * v_top_right \
                + (fy * gx)[:, None] * v_bottom_left + (fy * fx)[:, None] * v_bottom_right
            tl.store(grad_weights_ptr + sample, tl.sum(grad_output * sampled, axis=1).to(
                grad_weights_ptr.dtype.element_ty), mask=row_mask)

            weighted = grad_output * weight[:, None]
            d_fx = gy[:, None] * (v_top_right - v_top_left) + fy[:, None] * (v_bottom_right - v_bottom_left)
            d_fy = gx[:, None] * (v_bottom_left - v_top_left) + fx[:, None] * (v_bottom_right - v_top_right)
            grad_x = tl.sum(weighted * d_fx, axis=1) * width.to(fx.dtype)
            grad_y = tl.sum(weighted * d_fy, axis=1) * height.to(fy.dtype)
            tl.store(grad_locations_ptr + 2 * sample, grad_x.to(grad_locations_ptr.dtype.element_ty), mask=row_mask)
            tl.store(grad_locations_ptr + 2 * sample + 1, grad_y.to(grad_locations_ptr.dtype.element_ty),
                     mask=row_mask)

            scatter_corner(grad_value_ptr, top_left, top_left_in, channel, channel_mask, weighted * (gy * gx)[:, None])
            scatter_corner(grad_value_ptr, top_right, top_right_in, channel, channel_mask,
                           weighted * (gy * fx)[:, None])
            scatter_corner(grad_value_ptr, bottom_left, bottom_left_in, channel, channel_mask,
                           weighted * (fy * gx)[:, None])
            scatter_corner(grad_value_ptr, bottom_right, bottom_right_in, channel, channel_mask,
                           weighted * (fy * fx)[:, None])
