"""The Triton kernels against the PyTorch reference in float64: output and the three gradients.

Locations are spread over [-0.2, 1.2] unless a case says otherwise, so part of every case
samples outside the maps (zero padding).
"""
import pytest
import torch

from ddetr_plugin.ops import ms_deform_attn_pytorch, multi_scale_deformable_attention

from tests._support.op_compare import assert_matches_reference
from tests._support.op_inputs import make_inputs, make_pixel_edge_inputs, non_contiguous_copy

CASES = {
    "D0": dict(channels=0),  # no channels: zero output, zero location and weight gradients
    "D30": dict(channels=30),
    "D32": dict(channels=32),
    "D71": dict(channels=71),  # two programs in the interpreter, the second partly rows past the end
    "D300": dict(channels=300, queries=3),
    "one_level": dict(levels=((5, 7),)),
    "four_odd_levels": dict(levels=((9, 11), (5, 7), (3, 3), (1, 5)), points=2),
    "batch_3": dict(batch=3, queries=4),
    "far_outside": dict(spread=(-1.5, 2.5)),
    "one_head_one_point": dict(heads=1, points=1),
}


@pytest.mark.parametrize("case", CASES)
def test_float64_matches_reference(device, case):
    assert_matches_reference(make_inputs(device=device, **CASES[case]), "triton", atol=1e-10)


def test_exact_pixel_edges(device):
    assert_matches_reference(make_pixel_edge_inputs(device), "triton", atol=1e-10)


def test_non_contiguous_inputs(device):
    assert_matches_reference(non_contiguous_copy(make_inputs(device=device)), "triton", atol=1e-10)


def test_int32_level_tensors(device):
    value, shapes, starts, locations, weights = make_inputs(device=device)
    assert_matches_reference((value, shapes.int(), starts.int(), locations, weights), "triton", atol=1e-10)


def test_float32_matches_reference(device):
    args = make_inputs(batch=2, heads=4, channels=32, levels=((12, 16), (6, 8), (3, 4)), queries=20, points=4,
                       dtype=torch.float32, device=device)
    # Location gradients are differences of neighbouring pixels scaled by W: float32 rounding shows there.
    assert_matches_reference(args, "triton", atol=1e-4, rtol=1e-4)


def test_gradcheck_float64(device):
    value, shapes, starts, locations, weights = make_inputs(batch=1, heads=1, channels=2, levels=((3, 4), (2, 2)),
                                                            queries=2, points=2, device=device)
    # Keep locations away from pixel centres: bilinear sampling has kinks there.
    locations = (locations.detach() + 0.013).requires_grad_()

    def op(v, loc, w):
        return multi_scale_deformable_attention(v, shapes, starts, loc, w, backend="triton")

    assert torch.autograd.gradcheck(op, (value, locations, weights))


def test_empty_query_set(device):
    value, shapes, starts, locations, weights = make_inputs(queries=0, device=device)
    out = multi_scale_deformable_attention(value, shapes, starts, locations, weights, backend="triton")
    assert out.shape == (2, 0, 2 * 8)
    grad_value, grad_locations, grad_weights = torch.autograd.grad(out.sum(), (value, locations, weights))
    assert torch.count_nonzero(grad_value) == 0
    assert grad_locations.shape == locations.shape and grad_weights.shape == weights.shape


# The interpreter evaluates both sides of tl.where in NumPy: -inf - -inf warns before it is discarded.
@pytest.mark.filterwarnings("ignore:invalid value encountered in subtract:RuntimeWarning")
def test_nan_and_huge_locations_sample_zeros(device):
    value, shapes, starts, locations, weights = make_inputs(device=device, requires_grad=False)
    locations[0, 0] = float("nan")
    locations[0, 1] = 1e30
    locations[1, 0] = -float("inf")
    out = multi_scale_deformable_attention(value, shapes, starts, locations, weights, backend="triton")
    assert torch.isfinite(out).all()
    ref = ms_deform_attn_pytorch(value, shapes, starts, locations.nan_to_num(nan=5.0, neginf=-5.0), weights)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=0)
