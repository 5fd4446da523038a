"""tools/benchmark_op.py's Triton backend on small levels: checked against the reference, then timed."""
import pytest
import torch

from ....checkpoint.helpers import load_tool

LEVELS = ((6, 8), (3, 4))


@pytest.fixture
def tool(monkeypatch):
    """The tool with a decoder of 20 queries instead of 300: the interpreter is slow."""
    tool = load_tool("benchmark_op")
    monkeypatch.setitem(tool.SHAPES, "decoder", 20)
    return tool


def test_triton_passes_the_reference_check_and_is_timed(tool, device):
    assert tool.unavailable_reason("triton", device, torch.float32) is None
    assert tool.check_against_reference("triton", "decoder", device, torch.float32, False, LEVELS) is None
    seconds, peak_mib = tool.run_case("decoder", "triton", "fwd+bwd", device, torch.float32, 1, 1, False, LEVELS)
    assert seconds > 0 and peak_mib >= 0


def test_a_kernel_outside_the_tolerance_is_reported_not_timed(tool, device, monkeypatch):
    monkeypatch.setitem(tool.TOLERANCE, torch.float32, 0.0)  # float32 rounding now counts as disagreeing
    failure = tool.check_against_reference("triton", "decoder", device, torch.float32, False, LEVELS)
    assert failure.startswith("triton disagrees with the float64 reference on output") and failure.endswith("not timed")
