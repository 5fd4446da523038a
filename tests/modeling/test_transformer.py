"""The deformable transformer: layer order, reference points, refinement, two-stage, padding."""
import math

import pytest
import torch
import torch.nn.functional as F

from ddetr_plugin.config import get_cfg
from ddetr_plugin.modeling.transformer import (
    MLP,
    DeformableTransformer,
    DeformableTransformerDecoderLayer,
    DeformableTransformerEncoderLayer,
    apply_box_delta,
    encoder_output_proposals,
    encoder_reference_points,
    inverse_sigmoid,
    proposal_pos_embed,
)
from ddetr_plugin.registry import TRANSFORMER_REGISTRY, build

D_MODEL = 32


def _randomize(module: torch.nn.Module, std: float = 0.2) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0, std)
    return module


def _transformer(two_stage=False, levels=2, dec_layers=2) -> DeformableTransformer:
    torch.manual_seed(0)
    return DeformableTransformer(
        d_model=D_MODEL, num_heads=4, num_encoder_layers=2, num_decoder_layers=dec_layers, dim_feedforward=48,
        dropout=0.0, num_feature_levels=levels, enc_num_points=2, dec_num_points=3, two_stage=two_stage,
    ).double().eval()


def _masks(sizes, valid):
    """Per-level (N, H, W) masks, True outside the valid (h, w) top-left block of each image."""
    masks = []
    for level, (height, width) in enumerate(sizes):
        mask = torch.ones(len(valid), height, width, dtype=torch.bool)
        for image, per_level in enumerate(valid):
            h, w = per_level[level]
            mask[image, :h, :w] = False
        masks.append(mask)
    return masks


def _heads(num, std=0.3):
    torch.manual_seed(3)
    class_heads = [torch.nn.Linear(D_MODEL, 3).double() for _ in range(num)]
    box_heads = [_randomize(MLP(D_MODEL, D_MODEL, 4, 3).double(), std) for _ in range(num)]
    return class_heads, box_heads


# ---------------------------------------------------------------- layers
def _ffn(layer, x):
    hidden = F.relu(F.linear(x, layer.linear1.weight, layer.linear1.bias))
    return F.linear(hidden, layer.linear2.weight, layer.linear2.bias)


def test_encoder_layer_is_post_norm_attention_then_ffn():
    layer = _randomize(DeformableTransformerEncoderLayer(D_MODEL, 48, 0.0, "relu", 2, 4, 2).double())
    torch.manual_seed(1)
    shapes = torch.tensor([[3, 4], [2, 2]])
    starts = torch.tensor([0, 12])
    src, pos = torch.randn(2, 16, D_MODEL, dtype=torch.float64), torch.randn(2, 16, D_MODEL, dtype=torch.float64)
    ref = torch.rand(2, 16, 2, 2, dtype=torch.float64)

    x = F.layer_norm(src + layer.self_attn(src + pos, ref, src, shapes, starts), (D_MODEL,),
                     layer.norm1.weight, layer.norm1.bias)
    ffn = _ffn(layer, x)
    expected = F.layer_norm(x + ffn, (D_MODEL,), layer.norm2.weight, layer.norm2.bias)
    torch.testing.assert_close(layer(src, pos, ref, shapes, starts), expected)


def test_decoder_layer_is_self_attention_then_cross_attention_then_ffn():
    layer = _randomize(DeformableTransformerDecoderLayer(D_MODEL, 48, 0.0, "relu", 2, 4, 2).double())
    torch.manual_seed(1)
    shapes = torch.tensor([[3, 4], [2, 2]])
    starts = torch.tensor([0, 12])
    target, pos = torch.randn(2, 5, D_MODEL, dtype=torch.float64), torch.randn(2, 5, D_MODEL, dtype=torch.float64)
    memory = torch.randn(2, 16, D_MODEL, dtype=torch.float64)
    ref = torch.rand(2, 5, 2, 4, dtype=torch.float64)

    # self-attention written out: queries and keys carry the position, values do not
    w_q, w_k, w_v = layer.self_attn.in_proj_weight.chunk(3)
    b_q, b_k, b_v = layer.self_attn.in_proj_bias.chunk(3)
    heads = lambda t: t.view(2, 5, 4, D_MODEL // 4).transpose(1, 2)  # noqa: E731
    q, k, v = heads((target + pos) @ w_q.T + b_q), heads((target + pos) @ w_k.T + b_k), heads(target @ w_v.T + b_v)
    attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D_MODEL // 4), dim=-1) @ v
    attn = layer.self_attn.out_proj(attn.transpose(1, 2).reshape(2, 5, D_MODEL))
    x = F.layer_norm(target + attn, (D_MODEL,), layer.norm2.weight, layer.norm2.bias)
    x = F.layer_norm(x + layer.cross_attn(x + pos, ref, memory, shapes, starts), (D_MODEL,),
                     layer.norm1.weight, layer.norm1.bias)
    ffn = _ffn(layer, x)
    expected = F.layer_norm(x + ffn, (D_MODEL,), layer.norm3.weight, layer.norm3.bias)
    torch.testing.assert_close(layer(target, pos, ref, memory, shapes, starts), expected)


# ---------------------------------------------------------------- reference points and valid ratios
def test_encoder_reference_points_of_a_padded_batch():
    transformer = _transformer()
    sizes = [(4, 6), (2, 3)]
    # image 0 fills both levels; image 1 is valid on 2x4 of level 0 and 2x2 of level 1
    masks = _masks(sizes, [[(4, 6), (2, 3)], [(2, 4), (2, 2)]])
    feats = [torch.zeros(2, D_MODEL, h, w, dtype=torch.float64) for h, w in sizes]
    levels = transformer.flatten(feats, masks, feats)
    expected_ratios = torch.tensor([[[1, 1], [1, 1]], [[4 / 6, 2 / 4], [2 / 3, 1]]])
    torch.testing.assert_close(levels.valid_ratios, expected_ratios)
    torch.testing.assert_close(levels.valid_sizes, torch.tensor([[[6, 4], [3, 2]], [[4, 2], [2, 2]]]))
    assert levels.spatial_shapes.tolist() == [[4, 6], [2, 3]] and levels.level_start_index.tolist() == [0, 24]

    ref = encoder_reference_points(levels.shapes, levels.valid_ratios)
    assert ref.shape == (2, 30, 2, 2)
    # image 0, level-0 pixel (y=1, x=2): its centre over the full level, the same on both levels
    torch.testing.assert_close(ref[0, 8], torch.tensor([[2.5 / 6, 1.5 / 4]] * 2))
    # image 1, level-0 pixel (y=1, x=2): centre over the valid 2x4 block = (0.625, 0.75),
    # then times each level's valid ratio (w, h): (4/6, 1/2) and (2/3, 1)
    torch.testing.assert_close(ref[1, 8], torch.tensor([[0.625 * 4 / 6, 0.75 / 2], [0.625 * 2 / 3, 0.75]]))
    # image 1, level-1 pixel (y=0, x=1): centre over the valid 2x2 block = (0.75, 0.25)
    torch.testing.assert_close(ref[1, 25], torch.tensor([[0.75 * 4 / 6, 0.25 / 2], [0.75 * 2 / 3, 0.25]]))


# ---------------------------------------------------------------- decoder references and refinement
def test_fixed_references_without_refinement():
    transformer = _transformer()
    sizes = [(4, 6), (2, 3)]
    torch.manual_seed(2)
    feats = [torch.randn(1, D_MODEL, h, w, dtype=torch.float64) for h, w in sizes]
    out = transformer(feats, _masks(sizes, [sizes]), feats, 6, torch.randn(6, 2 * D_MODEL, dtype=torch.float64))
    assert out.hidden_states.shape == (2, 1, 6, D_MODEL)
    assert out.reference_points[0].shape == (1, 6, 2)
    torch.testing.assert_close(out.reference_points[1], out.reference_points[0])
    assert out.enc_outputs_class is None and out.enc_outputs_coord_unact is None


def test_box_refinement_moves_references_and_detaches_them():
    transformer = _transformer(dec_layers=3)
    _, box_heads = _heads(3)
    sizes = [(4, 6), (2, 3)]
    torch.manual_seed(2)
    feats = [torch.randn(1, D_MODEL, h, w, dtype=torch.float64) for h, w in sizes]
    query_embed = torch.randn(6, 2 * D_MODEL, dtype=torch.float64)
    out = transformer(feats, _masks(sizes, [sizes]), feats, 6, query_embed, bbox_embed=box_heads)

    refs = out.reference_points
    assert [r.shape[-1] for r in refs] == [2, 4, 4]  # a 2-d point becomes a box after the first layer
    expected = apply_box_delta(box_heads[0](out.hidden_states[0]), refs[0])
    torch.testing.assert_close(refs[1], expected.detach())
    torch.testing.assert_close(refs[2], apply_box_delta(box_heads[1](out.hidden_states[1]), refs[1]).detach())
    assert not refs[1].requires_grad and not refs[2].requires_grad

    # the last layer depends on head 0 only through the detached reference: no gradient reaches it
    out.hidden_states[2].sum().backward()
    assert all(p.grad is None for p in box_heads[0].parameters())
    assert transformer.decoder.layers[0].linear1.weight.grad.abs().max() > 0


def test_apply_box_delta_and_inverse_sigmoid():
    reference = torch.tensor([[0.25, 0.5, 0.1, 0.2]])
    delta = torch.tensor([[0.3, -0.2, 0.5, 1.0]])
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    expected = torch.tensor([[logit(0.25) + 0.3, -0.2, logit(0.1) + 0.5, logit(0.2) + 1.0]]).sigmoid()
    torch.testing.assert_close(apply_box_delta(delta, reference), expected)
    # a 2-d reference moves only the centre; the size is sigmoid(delta)
    expected_2d = torch.tensor([[logit(0.25) + 0.3, -0.2, 0.5, 1.0]]).sigmoid()
    torch.testing.assert_close(apply_box_delta(delta, reference[:, :2]), expected_2d)
    # saturated references stay finite (clamped at 1e-5)
    saturated = inverse_sigmoid(torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(saturated, torch.tensor([math.log(1e-5), -math.log(1e-5)]))


# ---------------------------------------------------------------- two-stage
def test_encoder_output_proposals():
    sizes = [(4, 6), (2, 3)]
    masks = _masks(sizes, [[(4, 6), (2, 3)], [(2, 4), (1, 2)]])
    padding_mask = torch.cat([m.flatten(1) for m in masks], dim=1)
    valid_sizes = torch.tensor([[[6, 4], [3, 2]], [[4, 2], [2, 1]]])
    memory = torch.randn(2, 30, 8)
    out_memory, proposals = encoder_output_proposals(memory, padding_mask, sizes, valid_sizes)

    logit = lambda values: torch.tensor([math.log(v / (1 - v)) for v in values])  # noqa: E731
    # image 1, level 0 pixel (y=1, x=2) over its valid 2x4 block; side 0.05
    torch.testing.assert_close(proposals[1, 8], logit([2.5 / 4, 1.5 / 2, 0.05, 0.05]))
    # image 1, level 1 pixel (y=0, x=1) over its valid 1x2 block; side 0.05 * 2
    torch.testing.assert_close(proposals[1, 25], logit([1.5 / 2, 0.5 / 1, 0.1, 0.1]))
    torch.testing.assert_close(proposals[0, 25], logit([1.5 / 3, 0.5 / 2, 0.1, 0.1]))
    assert torch.isinf(proposals[padding_mask]).all() and (proposals[padding_mask] > 0).all()
    assert torch.isfinite(proposals[~padding_mask]).all()
    assert out_memory[padding_mask].abs().max() == 0
    torch.testing.assert_close(out_memory[~padding_mask], memory[~padding_mask])


def test_proposals_reaching_the_border_are_disabled():
    # 64 columns: the first centre is 0.5 / 64 < 0.01 of the width, the last > 0.99
    padding_mask = torch.zeros(1, 64, dtype=torch.bool)
    memory = torch.ones(1, 64, 4)
    out_memory, proposals = encoder_output_proposals(memory, padding_mask, [(1, 64)], torch.tensor([[[64, 1]]]))
    disabled = torch.isinf(proposals).any(-1)[0]
    assert disabled.tolist() == [True] + [False] * 62 + [True]
    assert out_memory[0, 0].abs().max() == 0 and out_memory[0, 1].abs().min() == 1


def test_proposal_pos_embed_values():
    proposals = torch.zeros(1, 1, 4)  # sigmoid 0.5 -> angle pi / dim_t
    num_feats = 8
    embed = proposal_pos_embed(proposals, num_feats)
    assert embed.shape == (1, 1, 4 * num_feats)
    first_coordinate = embed[0, 0, :num_feats]
    expected = []
    for i in range(num_feats):
        angle = math.pi / 10000 ** (2 * (i // 2) / num_feats)
        expected.append(math.sin(angle) if i % 2 == 0 else math.cos(angle))
    torch.testing.assert_close(first_coordinate, torch.tensor(expected))
    torch.testing.assert_close(embed[0, 0, num_feats:2 * num_feats], first_coordinate)


def test_two_stage_selects_top_k_proposals_by_the_first_logit():
    num_queries = 7
    transformer = _transformer(two_stage=True)
    class_heads, box_heads = _heads(1, std=0.05)
    sizes = [(4, 6), (2, 3)]
    masks = _masks(sizes, [[(4, 6), (2, 3)], [(2, 4), (1, 2)]])
    torch.manual_seed(2)
    feats = [torch.randn(2, D_MODEL, h, w, dtype=torch.float64) for h, w in sizes]
    out = transformer(feats, masks, feats, num_queries, proposal_class_head=class_heads[0],
                      proposal_box_head=box_heads[0])

    assert out.enc_outputs_class.shape == (2, 30, 3) and out.enc_outputs_coord_unact.shape == (2, 30, 4)
    padding_mask = torch.cat([m.flatten(1) for m in masks], dim=1)
    assert torch.isinf(out.enc_outputs_coord_unact[padding_mask]).all()
    top = out.enc_outputs_class[..., 0].topk(num_queries, dim=1).indices
    expected = torch.gather(out.enc_outputs_coord_unact, 1, top[..., None].expand(-1, -1, 4)).sigmoid()
    assert out.reference_points[0].shape == (2, num_queries, 4)
    torch.testing.assert_close(out.reference_points[0], expected)
    assert out.hidden_states.shape == (2, 2, num_queries, D_MODEL)


# ---------------------------------------------------------------- padding invariance
def _padded_pair(transformer, seed=2):
    """One image alone, and the same image padded (garbage in the padding) next to another image."""
    # the levels' padded sizes are not in the ratio of their valid sizes (7/4 vs 6/3), as with real strides
    small, big = [(4, 6), (2, 3)], [(6, 7), (3, 4)]
    torch.manual_seed(seed)
    feats = [torch.randn(1, D_MODEL, h, w, dtype=torch.float64) for h, w in small]
    pos = [torch.randn(1, D_MODEL, h, w, dtype=torch.float64) for h, w in small]
    padded_feats = [torch.randn(2, D_MODEL, h, w, dtype=torch.float64) * 10 for h, w in big]
    padded_pos = [torch.randn(2, D_MODEL, h, w, dtype=torch.float64) for h, w in big]
    for level, (h, w) in enumerate(small):
        padded_feats[level][0, :, :h, :w] = feats[level][0]
        padded_pos[level][0, :, :h, :w] = pos[level][0]
    alone = (feats, _masks(small, [small]), pos)
    padded = (padded_feats, _masks(big, [small, big]), padded_pos)
    # positions of the small image's pixels inside the padded flattening
    index = torch.cat([
        torch.arange(bh * bw).view(bh, bw)[:h, :w].flatten() + sum(hh * ww for hh, ww in big[:level])
        for level, ((h, w), (bh, bw)) in enumerate(zip(small, big))
    ])
    return alone, padded, index


@pytest.mark.parametrize("refine", [False, True])
def test_one_stage_outputs_do_not_depend_on_padding(refine):
    # random weights everywhere: offsets of a few pixels in all directions, many beyond the valid region
    transformer = _randomize(_transformer())
    _, box_heads = _heads(2) if refine else (None, None)
    alone, padded, _ = _padded_pair(transformer)
    query_embed = torch.randn(6, 2 * D_MODEL, dtype=torch.float64)
    expected = transformer(*alone, 6, query_embed, bbox_embed=box_heads)
    actual = transformer(*padded, 6, query_embed, bbox_embed=box_heads)
    # tolerance: the valid ratios are float32, as the official
    torch.testing.assert_close(actual.hidden_states[:, :1], expected.hidden_states, atol=1e-5, rtol=1e-5)
    for got, want in zip(actual.reference_points, expected.reference_points):
        torch.testing.assert_close(got[:1].double(), want.double(), atol=1e-6, rtol=1e-6)


def test_two_stage_proposals_do_not_depend_on_padding():
    transformer = _randomize(_transformer(two_stage=True))
    class_heads, box_heads = _heads(1, std=0.05)
    alone, padded, index = _padded_pair(transformer)
    heads = dict(proposal_class_head=class_heads[0], proposal_box_head=box_heads[0])
    expected = transformer(*alone, 5, **heads)
    actual = transformer(*padded, 5, **heads)
    torch.testing.assert_close(actual.enc_outputs_class[0, index], expected.enc_outputs_class[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        actual.enc_outputs_coord_unact[0, index], expected.enc_outputs_coord_unact[0], atol=1e-5, rtol=1e-5
    )


# ---------------------------------------------------------------- construction
def test_built_from_config_with_official_names_and_init():
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.TRANSFORMER.D_MODEL", 64, "MODEL.TRANSFORMER.ENC_LAYERS", 1,
                         "MODEL.TRANSFORMER.DEC_LAYERS", 2, "MODEL.NUM_QUERIES", 9, "MODEL.TWO_STAGE", True])
    transformer = build(TRANSFORMER_REGISTRY, "DeformableTransformer", cfg)
    assert transformer.two_stage and transformer.num_feature_levels == 4 and transformer.num_decoder_layers == 2
    assert not hasattr(transformer, "two_stage_num_proposals")  # two-stage keeps MODEL.NUM_QUERIES proposals
    keys = set(transformer.state_dict())
    for key in ("level_embed", "encoder.layers.0.self_attn.sampling_offsets.weight", "encoder.layers.0.norm2.bias",
                "decoder.layers.1.cross_attn.value_proj.weight", "decoder.layers.1.self_attn.in_proj_weight",
                "decoder.layers.1.self_attn.out_proj.weight", "decoder.layers.1.norm3.weight",
                "enc_output.weight", "enc_output_norm.weight", "pos_trans.weight", "pos_trans_norm.bias"):
        assert key in keys, key
    assert "reference_points.weight" not in keys
    assert transformer.pos_trans.weight.shape == (128, 128)
    assert transformer.decoder.layers[0].self_attn.in_proj_bias.abs().max() == 0

    one_stage = DeformableTransformer(d_model=64, num_heads=8, num_encoder_layers=1, num_decoder_layers=1)
    assert one_stage.reference_points.bias.abs().max() == 0
    # every MSDeformAttn keeps its own scheme after the transformer-wide xavier pass
    assert one_stage.encoder.layers[0].self_attn.attention_weights.weight.abs().max() == 0
    assert one_stage.decoder.layers[0].cross_attn.sampling_offsets.bias[:2].tolist() == [1.0, 0.0]


def test_errors_name_the_problem():
    transformer = _transformer()
    sizes = [(4, 6), (2, 3)]
    feats = [torch.zeros(1, D_MODEL, h, w, dtype=torch.float64) for h, w in sizes]
    with pytest.raises(ValueError, match="expects 2 levels"):
        transformer(feats[:1], _masks(sizes, [sizes])[:1], feats[:1], 6, torch.zeros(6, 2 * D_MODEL))
    with pytest.raises(ValueError, match="needs query_embed"):
        transformer(feats, _masks(sizes, [sizes]), feats, 6)
    with pytest.raises(ValueError, match="query_embed has 6 rows, expected num_queries = 5"):
        transformer(feats, _masks(sizes, [sizes]), feats, 5, torch.zeros(6, 2 * D_MODEL, dtype=torch.float64))
    with pytest.raises(ValueError, match="MODEL.TRANSFORMER.ACTIVATION must be one of"):
        DeformableTransformer(d_model=32, num_heads=4, activation="swish")
    two_stage = _transformer(two_stage=True)
    class_heads, box_heads = _heads(1)
    with pytest.raises(ValueError, match="have 30 positions, fewer than the 31 proposals"):
        two_stage(feats, _masks(sizes, [sizes]), feats, 31, proposal_class_head=class_heads[0],
                  proposal_box_head=box_heads[0])
