"""Launch plans of the Triton kernels: every row and channel covered, tiles within bounds."""
import pytest

from ddetr_plugin.ops.triton.launch import GPU_PROGRAMS, GPU_TILE, INTERPRETER_TILE, MAX_WARPS, plan_launch

# (rows = N * Lq * M, D): encoder and decoder of an 800x1066 image, odd and wide channel counts, tiny.
PROBLEMS = [(17821 * 8, 32), (300 * 8, 32), (2 * 9 * 2, 71), (5, 30), (1, 1), (3, 0), (64, 1025), (4 * 17821 * 8, 64)]


@pytest.mark.parametrize("on_gpu", [True, False], ids=["gpu", "interpreter"])
@pytest.mark.parametrize("rows, channels", PROBLEMS)
def test_plan_covers_the_problem_within_the_tile(rows, channels, on_gpu):
    plan = plan_launch(rows, channels, on_gpu)
    (programs,) = plan.grid
    assert (programs - 1) * plan.block_rows < rows <= programs * plan.block_rows
    assert plan.block_channels >= max(channels, 1) and plan.block_channels < 2 * max(channels, 1)
    for size in (plan.block_rows, plan.block_channels, plan.num_warps):
        assert size & (size - 1) == 0, f"{size} is not a power of two (tl.arange needs one)"
    tile = GPU_TILE if on_gpu else INTERPRETER_TILE
    assert plan.block_rows == 1 or plan.block_rows * plan.block_channels <= tile
    assert 1 <= plan.num_warps <= MAX_WARPS


def test_gpu_plan_spreads_small_problems_and_interpreter_plan_takes_few_programs():
    decoder_rows = 300 * 8
    gpu = plan_launch(decoder_rows, 32, on_gpu=True)
    interpreter = plan_launch(decoder_rows, 32, on_gpu=False)
    assert gpu.grid[0] >= GPU_PROGRAMS // 2
    assert interpreter.grid[0] * 8 <= gpu.grid[0]
