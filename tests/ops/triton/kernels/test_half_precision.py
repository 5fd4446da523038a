"""float16 and bfloat16: the kernels compute in float32 and round once.

Documented tolerance: every output and gradient element is within one epsilon of its dtype
(2^-10 for float16, 2^-7 for bfloat16) times the largest magnitude of the float64 reference
computed on the same rounded inputs. One rounding to nearest costs half of that; the
interpreter converts float32 to bfloat16 by truncation, which costs up to a whole epsilon.
"""
import pytest
import torch

from tests._support.op_compare import GRADIENT_NAMES, run
from tests._support.op_inputs import make_inputs


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_within_one_epsilon(device, dtype):
    inputs = make_inputs(heads=4, channels=32, levels=((12, 16), (6, 8), (3, 4)), queries=30, points=4)
    rounded = [t.detach().to(device=device, dtype=dtype).requires_grad_() if t.is_floating_point() else t.to(device)
               for t in inputs]
    grad_output = torch.randn(2, 30, 4 * 32, generator=torch.Generator().manual_seed(1)).to(device=device, dtype=dtype)
    actual = run(rounded, "triton", grad_output)
    expected = run([t.detach().double().requires_grad_() if t.is_floating_point() else t for t in rounded],
                   "pytorch", grad_output.double())
    tolerance = torch.finfo(dtype).eps
    for name, a, e in zip(("output", *GRADIENT_NAMES), (actual[0], *actual[1]), (expected[0], *expected[1])):
        assert a.dtype == dtype
        torch.testing.assert_close(a.double(), e, atol=tolerance * e.abs().max().item(), rtol=0,
                                   msg=lambda m, name=name: f"{name}: {m}")
