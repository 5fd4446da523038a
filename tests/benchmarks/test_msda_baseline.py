"""benchmarks/msda_baseline: the benchmark's baseline kernels match the PyTorch reference (needs a GPU).

The first run compiles the kernels; later runs reuse torch's extensions cache.
"""
import pytest
import torch

from benchmarks.msda_baseline import baseline_ms_deform_attn
from ddetr_plugin.ops import ms_deform_attn_pytorch

from ..ops.inputs import make_inputs

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="the baseline kernels are CUDA only")


def output_and_grads(attention, inputs):
    value, shapes, starts, locations, weights = inputs
    out = attention(value, shapes, starts, locations, weights)
    grad_output = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return (out, *torch.autograd.grad(out, (value, locations, weights), grad_output.to(out)))


# Shared-memory reductions: serial for D = 8 (<= 32) and D = 6 (not a power of two), a tree for D = 64;
# D = 300 is wider than a block: atomics into global memory.
@pytest.mark.parametrize("channels", [8, 6, 64, 300])
def test_float64_matches_reference(channels):
    # Locations spread over [-0.2, 1.2]: partly outside the maps, where corners read zeros.
    inputs = make_inputs(channels=channels, queries=20, device="cuda")
    actual = output_and_grads(baseline_ms_deform_attn, inputs)
    expected = output_and_grads(ms_deform_attn_pytorch, inputs)
    for name, a, e in zip(("output", "grad_value", "grad_locations", "grad_weights"), actual, expected):
        torch.testing.assert_close(a, e, atol=1e-10, rtol=0, msg=lambda m, name=name: f"{name}: {m}")


def test_bfloat16_close_to_float64_reference():
    inputs = make_inputs(heads=4, channels=32, queries=30, device="cuda")
    inputs16 = [t.detach().to(torch.bfloat16).requires_grad_() if t.is_floating_point() else t for t in inputs]
    actual = output_and_grads(baseline_ms_deform_attn, inputs16)
    # The reference on the same bfloat16-rounded inputs, in float64.
    expected = output_and_grads(
        ms_deform_attn_pytorch, [t.detach().double().requires_grad_() if t.is_floating_point() else t for t in inputs16]
    )
    for a, e in zip(actual, expected):
        assert a.dtype == torch.bfloat16
        scale = e.abs().max().item()
        torch.testing.assert_close(a.double(), e, atol=2e-2 * scale, rtol=0)
