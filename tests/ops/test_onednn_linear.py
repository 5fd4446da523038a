"""ddetr_plugin.ops.onednn_linear: F.linear on oneDNN for float32 on the CPU, F.linear elsewhere."""
import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from ddetr_plugin.ops import linear
from ddetr_plugin.ops import onednn_linear as linear_module

onednn_only = pytest.mark.skipif(not linear_module._ONEDNN, reason="this torch has no oneDNN")


def _ops_called(fn) -> set:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {event.key for event in prof.key_averages()}


def _float64_reference(x, weight, bias):
    out = F.linear(x.double(), weight.double(), None if bias is None else bias.double())
    return out.float()


@onednn_only
@pytest.mark.parametrize("shape", [(1030, 33), (2, 600, 64), (3, 40, 50, 64)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_forward_runs_on_onednn_and_matches_float64(shape, with_bias):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=generator)
    weight = torch.randn(48, shape[-1], generator=generator)
    bias = torch.randn(48, generator=generator) if with_bias else None
    assert "mkldnn::_linear_pointwise" in _ops_called(lambda: linear(x, weight, bias))
    out = linear(x, weight, bias)
    assert out.shape == (*shape[:-1], 48) and out.dtype == torch.float32
    torch.testing.assert_close(out, _float64_reference(x, weight, bias), rtol=1e-5, atol=1e-5)


@onednn_only
def test_non_contiguous_input_and_weight():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(64, 1100, generator=generator).t()  # (1100, 64), column-major
    weight = torch.randn(64, 32, generator=generator).t()  # (32, 64), a transposed view
    torch.testing.assert_close(linear(x, weight), _float64_reference(x, weight, None), rtol=1e-5, atol=1e-5)


@onednn_only
@pytest.mark.parametrize("needs_grad", [(True, True, True), (True, False, False), (False, True, True),
                                        (False, False, True)])
def test_gradients_equal_f_linear(needs_grad):
    generator = torch.Generator().manual_seed(2)
    tensors = [torch.randn(2, 600, 96, generator=generator), torch.randn(80, 96, generator=generator),
               torch.randn(80, generator=generator)]
    ours = [t.clone().requires_grad_(n) for t, n in zip(tensors, needs_grad)]
    theirs = [t.clone().requires_grad_(n) for t, n in zip(tensors, needs_grad)]
    grad_output = torch.randn(2, 600, 80, generator=generator)
    linear(*ours).backward(grad_output)
    F.linear(*theirs).backward(grad_output)
    for mine, reference, needed in zip(ours, theirs, needs_grad):
        if needed:
            torch.testing.assert_close(mine.grad, reference.grad, rtol=1e-5, atol=1e-4)
        else:
            assert mine.grad is None


@onednn_only
def test_backward_runs_on_onednn_for_the_input_gradient():
    x = torch.randn(1500, 64, requires_grad=True)
    weight = torch.randn(32, 64, requires_grad=True)
    out = linear(x, weight)
    assert "mkldnn::_linear_pointwise" in _ops_called(lambda: out.sum().backward())


@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated")
def test_falls_back_to_f_linear_where_onednn_does_not_apply():
    x64 = torch.randn(5, 8, dtype=torch.float64)
    w64 = torch.randn(3, 8, dtype=torch.float64)
    assert "mkldnn::_linear_pointwise" not in _ops_called(lambda: linear(x64, w64))
    torch.testing.assert_close(linear(x64, w64), F.linear(x64, w64), rtol=0, atol=0)

    x, weight = torch.randn(2000, 8), torch.randn(3, 8)
    assert "mkldnn::_linear_pointwise" not in _ops_called(lambda: linear(x[:1000], weight))  # few rows
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert linear(x, weight).dtype == torch.bfloat16  # autocast applies as to F.linear
    assert linear(torch.randn(0, 8), weight).shape == (0, 3)
    assert linear(torch.randn(8), weight).shape == (3,)
    traced = torch.jit.trace(lambda t: linear(t, weight), (x,))
    assert "aten::linear" in str(traced.graph)


@onednn_only
def test_in_place_ops_on_the_output_are_allowed_and_differentiate_correctly():
    # the encoder adds its residual in place into the linear layer's fresh output
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(2, 600, 32, generator=generator, requires_grad=True)
    weight = torch.randn(32, 32, generator=generator, requires_grad=True)
    out = linear(x, weight)
    assert not out._is_view()  # no view: autograd does not copy the gradient through CopySlices
    result = out.add_(x)
    grad_output = torch.randn(2, 600, 32, generator=generator)
    ours = torch.autograd.grad(result, (x, weight), grad_output)
    reference = torch.autograd.grad(F.linear(x, weight) + x, (x, weight), grad_output)
    for mine, theirs in zip(ours, reference):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-4)
