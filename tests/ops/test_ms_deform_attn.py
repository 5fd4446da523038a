"""Native kernels against the PyTorch reference: values, gradients, awkward shapes."""
import pytest
import torch

from ddetr_plugin.ops import ms_deform_attn_pytorch, multi_scale_deformable_attention

from tests._support.op_compare import assert_matches_reference, run
from tests._support.op_inputs import DEVICES, make_inputs, make_pixel_edge_inputs, non_contiguous_copy


def assert_native_matches_reference(args, atol, rtol=0.0):
    assert_matches_reference(args, "native", atol, rtol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels", [30, 32, 64, 71, 1025])
def test_float64_matches_reference_to_1e10(device, channels):
    args = make_inputs(channels=channels, queries=5 if channels > 100 else 9, device=device)
    assert_native_matches_reference(args, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
def test_float32_matches_reference(device):
    args = make_inputs(batch=2, heads=4, channels=32, levels=((12, 16), (6, 8), (3, 4)), queries=40, points=4,
                       dtype=torch.float32, device=device)
    # Location gradients are differences of neighbouring pixels scaled by W: float32 rounding shows there.
    assert_native_matches_reference(args, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_float64(device):
    value, shapes, starts, locations, weights = make_inputs(batch=1, heads=2, channels=3, queries=4, points=2,
                                                            device=device)
    # Keep locations away from pixel centres: bilinear sampling has kinks there.
    locations = (locations.detach() + 0.013).requires_grad_()

    def op(v, loc, w):
        return multi_scale_deformable_attention(v, shapes, starts, loc, w, backend="native")

    assert torch.autograd.gradcheck(op, (value, locations, weights))


@pytest.mark.parametrize("device", DEVICES)
def test_exact_pixel_edges(device):
    assert_native_matches_reference(make_pixel_edge_inputs(device), atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
def test_one_level(device):
    assert_native_matches_reference(make_inputs(levels=((5, 7),), device=device), atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("im2col_step", [1, 2, 64])
def test_batch_not_divisible_by_im2col_step(device, im2col_step):
    value, shapes, starts, locations, weights = make_inputs(batch=3, device=device)
    out = multi_scale_deformable_attention(value, shapes, starts, locations, weights, im2col_step=im2col_step,
                                           backend="native")
    ref = ms_deform_attn_pytorch(value, shapes, starts, locations, weights)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_inputs(device):
    args = non_contiguous_copy(make_inputs(device=device))
    assert_native_matches_reference(args, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
def test_empty_query_set(device):
    value, shapes, starts, locations, weights = make_inputs(queries=0, device=device)
    out = multi_scale_deformable_attention(value, shapes, starts, locations, weights, backend="native")
    assert out.shape == (2, 0, 2 * 8)
    out.sum().backward()
    assert torch.count_nonzero(value.grad) == 0 and locations.grad.shape == locations.shape


def test_locations_far_outside_and_nan_do_not_crash():
    value, shapes, starts, locations, weights = make_inputs(requires_grad=False)
    locations[0, 0] = float("nan")
    locations[0, 1] = 1e30
    locations[1, 0] = -1e30
    out = multi_scale_deformable_attention(value, shapes, starts, locations, weights, backend="native")
    assert torch.isfinite(out).all()
    # Far outside samples zeros, exactly as the reference.
    ref = ms_deform_attn_pytorch(value, shapes, starts, locations.nan_to_num(nan=5.0), weights)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=0)


def test_cpu_backward_is_deterministic():
    args = make_inputs(batch=2, heads=4, channels=32, queries=50, dtype=torch.float32)
    first = run(args, "native")[1]
    second = run(args, "native")[1]
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.skipif(not torch.cuda.is_available(), reason="half precision kernels are CUDA only")
def test_cuda_half_precision_close_to_float32_reference(dtype):
    args32 = make_inputs(heads=4, channels=32, queries=30, dtype=torch.float32, device="cuda")
    args16 = [t.detach().to(dtype).requires_grad_() if t.is_floating_point() else t for t in args32]
    out16, grads16 = run(args16, "native")
    ref32 = ms_deform_attn_pytorch(*[t.detach().to(dtype).float() if t.is_floating_point() else t for t in args16])
    assert out16.dtype == dtype
    tolerance = 1e-2 if dtype == torch.float16 else 5e-2
    torch.testing.assert_close(out16.float(), ref32, atol=tolerance, rtol=tolerance)
    assert all(torch.isfinite(g).all() for g in grads16)


def test_auto_picks_native_and_pytorch_backend_is_the_reference():
    value, shapes, starts, locations, weights = make_inputs(dtype=torch.float32)
    auto = multi_scale_deformable_attention(value, shapes, starts, locations, weights)
    assert "ddetr" in type(auto.grad_fn).__name__.lower() or "cpp" in type(auto.grad_fn).__name__.lower()
    reference = multi_scale_deformable_attention(value, shapes, starts, locations, weights, backend="pytorch")
    assert "ddetr" not in type(reference.grad_fn).__name__.lower()
    torch.testing.assert_close(auto, reference, atol=2e-5, rtol=1e-5)
