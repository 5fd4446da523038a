"""Launch parameters of the Triton kernels, chosen from the problem size.

No autotuning: the choice is a pure function of (rows, channels), so it costs nothing at run
time and traces under ``torch.compile``. The sizes are chosen from the compiled code, not from
GPU timings: a 512-element tile on 4 warps (4 channels per thread, one 16-byte load per
neighbour) compiles with vector loads and vector atomics and no spills, in fewer registers than
8 channels per thread (docs/benchmarks.md). ``make gpu-check`` times them.
"""
from typing import NamedTuple

GPU_TILE = 512  # elements of one (BLOCK_ROWS, BLOCK_CHANNELS) tile, when D leaves room for several rows
# The interpreter runs programs one after another, each operation a NumPy call on the whole
# tile: fewer, larger programs run the tests several times faster.
INTERPRETER_TILE = 4096
ELEMENTS_PER_WARP = 128  # 4 per thread: num_warps grows with the tile, up to MAX_WARPS
MAX_WARPS = 8
# Programs to aim for on a GPU: several per multiprocessor (a large GPU has over a hundred), so that
# decoder-sized problems (a few thousand rows) still spread over the whole chip.
GPU_PROGRAMS = 1024


class LaunchPlan(NamedTuple):
    """One kernel launch: ``grid`` programs of ``block_rows`` rows and ``block_channels`` channels."""

    block_rows: int
    block_channels: int
    num_warps: int
    grid: tuple[int]


def next_power_of_2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def plan_launch(rows: int, channels: int, on_gpu: bool) -> LaunchPlan:
    """Launch of ``rows`` output rows (N * Lq * M) of ``channels`` (D) channels each.

    Every channel of a row is in one tile (the location and weight gradients are sums over
    them), so BLOCK_CHANNELS is D rounded up to a power of two and rows fill the rest of the
    tile, but no more than the problem has. On a GPU, rows per program also shrink until there
    are about GPU_PROGRAMS programs; in the interpreter every program is as large as
    INTERPRETER_TILE allows.
    """
    rows, channels = int(rows), int(channels)
    block_channels = next_power_of_2(channels)
    block_rows = min(max(1, (GPU_TILE if on_gpu else INTERPRETER_TILE) // block_channels), next_power_of_2(rows))
    if on_gpu:
        block_rows = min(block_rows, next_power_of_2(-(-rows // GPU_PROGRAMS)))
    num_warps = min(MAX_WARPS, max(1, block_rows * block_channels // ELEMENTS_PER_WARP))
    return LaunchPlan(block_rows, block_channels, num_warps, (-(-rows // block_rows),))
