"""Bilinear sampling pieces shared by the forward and backward Triton kernels.

Semantics of ``grid_sample(mode="bilinear", padding_mode="zeros", align_corners=False)``:
a normalized location (x, y) in level l is the pixel position (x * W_l - 0.5, y * H_l - 0.5);
its four neighbouring pixels are weighted by the fractional parts, and a neighbour outside
the map reads zero. Per-row arguments are blocks of shape (BLOCK_ROWS,), one sampling point
per row, in the compute dtype (float32, or float64 for float64 inputs).
"""
import triton
import triton.language as tl


@triton.jit
def to_compute_dtype(x, FP64: tl.constexpr):
    """float64 inputs compute in float64; float32, float16 and bfloat16 in float32."""
    if FP64:
        return x.to(tl.float64)
    else:
        return x.to(tl.float32)


@triton.jit
def program_rows(rows, queries_heads, positions, heads, channels, BLOCK_ROWS: tl.constexpr,
                 BLOCK_CHANNELS: tl.constexpr):
    """This program's rows r = (n * Lq + q) * M + m (int64) and channels, their masks, M * D (the
    stride of one value position) and each row's element offset of value[n, 0, m, 0]."""
    row = (tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)).to(tl.int64)
    channel = tl.arange(0, BLOCK_CHANNELS)
    position_stride = heads * channels
    value_rows = (row // queries_heads) * positions * position_stride + (row % heads) * channels
    return row, row < rows, channel, channel < channels, position_stride, value_rows


@triton.jit
def load_level(shapes_ptr, starts_ptr, level):
    """(H_l, W_l, first position of level l in S), int64 scalars."""
    return tl.load(shapes_ptr + 2 * level), tl.load(shapes_ptr + 2 * level + 1), tl.load(starts_ptr + level)


@triton.jit
def bilinear_footprint(loc_x, loc_y, height, width, level_start, value_rows, position_stride, row_mask):
    """The 2x2 neighbourhood of each row's sampling point in one level of value (N, S, M, D).

    Args: ``height``, ``width`` and ``level_start`` are the level's scalars; ``value_rows``
    (BLOCK_ROWS,) int64 is each row's element offset of value[n, 0, m, 0]; ``position_stride``
    is M * D; ``row_mask`` marks real rows.

    Returns the element offsets (top-left, top-right, bottom-left, bottom-right) of each row's
    neighbours, whether each neighbour is inside the map (and the row real), and the fractional
    offsets (fx, fy). Insideness is decided in floating point, before any conversion to int, so
    NaN and huge locations put every neighbour outside instead of overflowing an index; such
    points get fx = fy = 0, so that no NaN reaches weights that multiply zeros.
    """
    x = loc_x * width.to(loc_x.dtype) - 0.5
    y = loc_y * height.to(loc_y.dtype) - 0.5
    x0 = tl.floor(x)
    y0 = tl.floor(y)
    left_in = (x0 >= 0) & (x0 <= width - 1)
    right_in = (x0 >= -1) & (x0 <= width - 2)
    top_in = (y0 >= 0) & (y0 <= height - 1) & row_mask
    bottom_in = (y0 >= -1) & (y0 <= height - 2) & row_mask
    any_x = left_in | right_in
    any_y = top_in | bottom_in
    fx = tl.where(any_x, x - x0, 0.0)
    fy = tl.where(any_y, y - y0, 0.0)
    column = tl.where(any_x, x0, 0.0).to(tl.int64)
    line = tl.where(any_y, y0, 0.0).to(tl.int64)
    top_left = value_rows + (level_start + line * width + column) * position_stride
    top_right = top_left + position_stride
    bottom_left = top_left + width * position_stride
    bottom_right = bottom_left + position_stride
    return (top_left, top_right, bottom_left, bottom_right,
            top_in & left_in, top_in & right_in, bottom_in & left_in, bottom_in & right_in, fx, fy)


@triton.jit
def load_corner(value_ptr, offsets, inside, channel, channel_mask, FP64: tl.constexpr):
    """(BLOCK_ROWS, BLOCK_CHANNELS) tile of value at per-row element ``offsets`` (BLOCK_ROWS,),
    zero where the neighbour is outside the map (``inside`` False) or the channel is padding."""
    tile = tl.load(value_ptr + offsets[:, None] + channel[None, :],
                   mask=inside[:, None] & channel_mask[None, :], other=0.0)
    return to_compute_dtype(tile, FP64)


@triton.jit
def load_sample(locations_ptr, weights_ptr, sample, row_mask, FP64: tl.constexpr):
    """Location (x, y) and attention weight of sampling point ``sample`` (BLOCK_ROWS,) int64,
    the flat index into attention_weights (N, Lq, M, L, P); zeros on padding rows."""
    loc_x = to_compute_dtype(tl.load(locations_ptr + 2 * sample, mask=row_mask, other=0.0), FP64)
    loc_y = to_compute_dtype(tl.load(locations_ptr + 2 * sample + 1, mask=row_mask, other=0.0), FP64)
    weight = to_compute_dtype(tl.load(weights_ptr + sample, mask=row_mask, other=0.0), FP64)
    return loc_x, loc_y, weight
