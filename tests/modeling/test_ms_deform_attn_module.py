"""MSDeformAttn against a direct computation with the PyTorch reference op."""
import math

import pytest
import torch

import ddetr_plugin.modeling.transformer.ms_deform_attn as msda_module
from ddetr_plugin.modeling.transformer import MSDeformAttn
from ddetr_plugin.ops import ms_deform_attn_pytorch

SHAPES = [(6, 8), (3, 4)]  # (H_l, W_l)
D_MODEL, HEADS, POINTS = 32, 4, 3


def _module() -> MSDeformAttn:
    torch.manual_seed(0)
    module = MSDeformAttn(D_MODEL, num_levels=len(SHAPES), num_heads=HEADS, num_points=POINTS).double()
    with torch.no_grad():  # random weights everywhere, so no term hides behind a zero init
        for parameter in module.parameters():
            parameter.normal_(0, 0.3)
    return module


def _inputs(batch=2, queries=5, ref_dim=2):
    torch.manual_seed(1)
    total = sum(h * w for h, w in SHAPES)
    spatial_shapes = torch.tensor(SHAPES, dtype=torch.long)
    level_start_index = torch.tensor([0, SHAPES[0][0] * SHAPES[0][1]], dtype=torch.long)
    query = torch.randn(batch, queries, D_MODEL, dtype=torch.float64)
    value_input = torch.randn(batch, total, D_MODEL, dtype=torch.float64)
    reference = torch.rand(batch, queries, len(SHAPES), ref_dim, dtype=torch.float64)
    if ref_dim == 4:
        reference[..., 2:] = reference[..., 2:] * 0.5 + 0.1
    return query, reference, value_input, spatial_shapes, level_start_index


def _direct(module, query, reference, value_input, spatial_shapes, level_start_index, padding_mask=None):
    """The official formulas written out level by level, then the reference op."""
    batch, queries, _ = query.shape
    levels = len(SHAPES)
    value = value_input @ module.value_proj.weight.T + module.value_proj.bias
    if padding_mask is not None:
        value = value * (~padding_mask[..., None]).double()
    value = value.reshape(batch, -1, HEADS, D_MODEL // HEADS)
    offsets = (query @ module.sampling_offsets.weight.T + module.sampling_offsets.bias).reshape(
        batch, queries, HEADS, levels, POINTS, 2
    )
    logits = (query @ module.attention_weights.weight.T + module.attention_weights.bias).reshape(
        batch, queries, HEADS, levels * POINTS
    )
    weights = (logits.exp() / logits.exp().sum(-1, keepdim=True)).reshape(batch, queries, HEADS, levels, POINTS)
    locations = torch.empty_like(offsets)
    for level, (height, width) in enumerate(SHAPES):
        ref = reference[:, :, None, level, None, :]  # (N, Lq, 1, 1, 2|4)
        if reference.shape[-1] == 2:
            locations[:, :, :, level, :, 0] = ref[..., 0] + offsets[:, :, :, level, :, 0] / width
            locations[:, :, :, level, :, 1] = ref[..., 1] + offsets[:, :, :, level, :, 1] / height
        else:
            for axis in range(2):
                locations[:, :, :, level, :, axis] = (
                    ref[..., axis] + offsets[:, :, :, level, :, axis] / POINTS * ref[..., 2 + axis] * 0.5
                )
    sampled = ms_deform_attn_pytorch(value, spatial_shapes, level_start_index, locations, weights)
    return sampled @ module.output_proj.weight.T + module.output_proj.bias


@pytest.mark.parametrize("ref_dim", [2, 4])
def test_matches_direct_computation(ref_dim):
    module = _module()
    args = _inputs(ref_dim=ref_dim)
    expected = _direct(module, *args)
    torch.testing.assert_close(module(*args), expected, rtol=1e-9, atol=1e-9)


def test_padding_positions_are_ignored():
    module = _module()
    query, reference, value_input, spatial_shapes, level_start_index = _inputs()
    padding_mask = torch.zeros(value_input.shape[:2], dtype=torch.bool)
    padding_mask[1, 10:30] = True
    padding_mask[0, -3:] = True
    out = module(query, reference, value_input, spatial_shapes, level_start_index, padding_mask)
    torch.testing.assert_close(
        out, _direct(module, query, reference, value_input, spatial_shapes, level_start_index, padding_mask)
    )
    garbage = value_input.clone()
    garbage[padding_mask] = 1e3
    torch.testing.assert_close(module(query, reference, garbage, spatial_shapes, level_start_index, padding_mask), out)


def test_gradients_reach_inputs_except_padding():
    module = _module()
    query, reference, value_input, spatial_shapes, level_start_index = _inputs()
    value_input.requires_grad_(True)
    query.requires_grad_(True)
    padding_mask = torch.zeros(value_input.shape[:2], dtype=torch.bool)
    padding_mask[:, 40:] = True
    module(query, reference, value_input, spatial_shapes, level_start_index, padding_mask).square().sum().backward()
    assert value_input.grad[:, 40:].abs().max() == 0
    assert value_input.grad[:, :40].abs().max() > 0
    assert query.grad.abs().max() > 0
    assert module.sampling_offsets.weight.grad.abs().max() > 0


def test_attention_weights_softmax_jointly_over_levels_and_points(monkeypatch):
    module = _module()
    args = _inputs()
    captured = {}

    def capture(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, **kwargs):
        captured["weights"] = attention_weights
        return ms_deform_attn_pytorch(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)

    monkeypatch.setattr(msda_module, "multi_scale_deformable_attention", capture)
    module(*args)
    weights = captured["weights"]  # (N, Lq, M, L, P)
    assert weights.shape == (2, 5, HEADS, len(SHAPES), POINTS)
    torch.testing.assert_close(weights.sum(dim=(3, 4)), torch.ones(2, 5, HEADS, dtype=torch.float64))
    # a per-level softmax would make each level sum to 1 instead
    assert not torch.allclose(weights.sum(dim=4), torch.full_like(weights.sum(dim=4), 0.5))


def test_initialisation_is_the_official_pattern():
    module = MSDeformAttn(d_model=64, num_levels=2, num_heads=8, num_points=3)
    assert module.sampling_offsets.weight.abs().max() == 0
    bias = module.sampling_offsets.bias.view(8, 2, 3, 2)  # (M, L, P, (x, y))
    # head h points along angle 2*pi*h/8, scaled so the larger component is 1
    directions = torch.tensor([[1, 0], [1, 1], [0, 1], [-1, 1], [-1, 0], [-1, -1], [0, -1], [1, -1]]).float()
    for point in range(3):
        for level in range(2):
            torch.testing.assert_close(bias[:, level, point], directions * (point + 1), atol=1e-5, rtol=0)
    for name in ("attention_weights.weight", "attention_weights.bias", "value_proj.bias", "output_proj.bias"):
        assert module.get_parameter(name).abs().max() == 0, name
    # xavier-uniform bound sqrt(6 / (fan_in + fan_out))
    assert 0 < module.value_proj.weight.abs().max() <= math.sqrt(6 / 128)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MSDeformAttn(d_model=30, num_heads=8)
    module = _module()
    query, reference, value_input, spatial_shapes, level_start_index = _inputs()
    with pytest.raises(ValueError, match=r"reference_points must be \(N, Lq, L, 2\) or \(N, Lq, L, 4\)"):
        module(query, reference[..., :1], value_input, spatial_shapes, level_start_index)
