"""Sine and learned position encodings against independent formulas, hand values and invariants."""
import math

import pytest
import torch

from ddetr_plugin.config import get_cfg
from ddetr_plugin.modeling.position_encoding import PositionEmbeddingLearned, PositionEmbeddingSine
from ddetr_plugin.registry import POSITION_ENCODING_REGISTRY, build


def padding_mask() -> torch.Tensor:
    """(2, 5, 6): image 0 valid in its top-left 3x4, image 1 valid everywhere but the last row."""
    mask = torch.ones(2, 5, 6, dtype=torch.bool)
    mask[0, :3, :4] = False
    mask[1, :4, :] = False
    return mask


def sine_by_loops(mask, num_pos_feats, temperature=10000.0, scale=2 * math.pi, offset=-0.5):
    """The official sine encoding at one valid pixel at a time, in float64 Python arithmetic."""
    batch, height, width = mask.shape
    valid = (~mask).tolist()
    out = torch.zeros(batch, 2 * num_pos_feats, height, width, dtype=torch.float64)
    for b in range(batch):
        for i in range(height):
            for j in range(width):
                if not valid[b][i][j]:
                    continue
                rows_so_far = sum(valid[b][r][j] for r in range(i + 1))
                rows_valid = sum(valid[b][r][j] for r in range(height))
                cols_so_far = sum(valid[b][i][c] for c in range(j + 1))
                cols_valid = sum(valid[b][i][c] for c in range(width))
                y = (rows_so_far + offset) / (rows_valid + 1e-6) * scale
                x = (cols_so_far + offset) / (cols_valid + 1e-6) * scale
                for k in range(num_pos_feats):
                    wavelength = temperature ** (2 * (k // 2) / num_pos_feats)
                    trig = math.sin if k % 2 == 0 else math.cos
                    out[b, k, i, j] = trig(y / wavelength)
                    out[b, num_pos_feats + k, i, j] = trig(x / wavelength)
    return out


def test_sine_matches_the_loop_formula_on_valid_pixels():
    mask = padding_mask()
    pos = PositionEmbeddingSine(num_pos_feats=8)(mask)
    assert pos.shape == (2, 16, 5, 6) and pos.dtype == torch.float32
    expected = sine_by_loops(mask, 8)
    valid = (~mask)[:, None].expand_as(pos)
    torch.testing.assert_close(pos[valid].double(), expected[valid], rtol=0, atol=1e-5)


def test_sine_hand_values():
    # one valid pixel: y = x = (1 - 0.5) / (1 + 1e-6) * 2pi, just under pi
    pos = PositionEmbeddingSine(num_pos_feats=4)(torch.zeros(1, 1, 1, dtype=torch.bool))
    angle = math.pi / (1 + 1e-6)
    wavelength = 10000 ** 0.5  # channels 2, 3 use temperature ** (2 * 1 / 4)
    expected = [math.sin(angle), math.cos(angle), math.sin(angle / wavelength), math.cos(angle / wavelength)] * 2
    assert expected[0] == pytest.approx(math.pi * 1e-6, rel=1e-3) and expected[1] == pytest.approx(-1.0)
    torch.testing.assert_close(pos.flatten().double(), torch.tensor(expected, dtype=torch.float64), atol=1e-6, rtol=0)


def test_sine_without_normalisation_uses_pixel_counts():
    pos = PositionEmbeddingSine(num_pos_feats=2, normalize=False)(torch.zeros(1, 3, 2, dtype=torch.bool))
    rows = torch.tensor([1.0, 2.0, 3.0])[:, None].expand(3, 2)
    cols = torch.tensor([1.0, 2.0])[None, :].expand(3, 2)
    torch.testing.assert_close(pos[0], torch.stack((rows.sin(), rows.cos(), cols.sin(), cols.cos())))


def test_sine_of_the_valid_region_ignores_padding():
    mask = padding_mask()
    encoding = PositionEmbeddingSine(num_pos_feats=16)
    padded = encoding(mask)
    unpadded = encoding(torch.zeros(1, 3, 4, dtype=torch.bool))
    torch.testing.assert_close(padded[0:1, :, :3, :4], unpadded)


def test_sine_checks_its_inputs():
    encoding = PositionEmbeddingSine(num_pos_feats=4)
    with pytest.raises(ValueError, match=r"\(B, H, W\) bool"):
        encoding(torch.zeros(1, 3, 3))
    with pytest.raises(ValueError, match="even"):
        PositionEmbeddingSine(num_pos_feats=5)


def test_learned_shape_and_layout():
    torch.manual_seed(0)
    encoding = PositionEmbeddingLearned(num_pos_feats=6)
    pos = encoding(padding_mask())
    assert pos.shape == (2, 12, 5, 6)
    # channels [0, F) follow x (columns), [F, 2F) follow y (rows); padding is ignored
    torch.testing.assert_close(pos[1, :6, 4, 2], encoding.col_embed.weight[2])
    torch.testing.assert_close(pos[0, 6:, 3, 5], encoding.row_embed.weight[3])
    torch.testing.assert_close(pos[0], pos[1])
    assert {name for name, _ in encoding.state_dict().items()} == {"row_embed.weight", "col_embed.weight"}


def test_learned_table_size_is_enforced():
    with pytest.raises(ValueError, match="51x3 exceeds .* 50"):
        PositionEmbeddingLearned(num_pos_feats=4)(torch.zeros(1, 51, 3, dtype=torch.bool))


@pytest.mark.parametrize("name", ["PositionEmbeddingSine", "PositionEmbeddingLearned"])
def test_from_config_gives_each_axis_half_of_d_model(name):
    cfg = get_cfg()
    cfg.MODEL.TRANSFORMER.D_MODEL = 64
    encoding = build(POSITION_ENCODING_REGISTRY, name, cfg)
    assert encoding(torch.zeros(1, 2, 3, dtype=torch.bool)).shape == (1, 64, 2, 3)
    cfg.MODEL.TRANSFORMER.D_MODEL = 63
    with pytest.raises(ValueError, match=r"D_MODEL \(63\) must be even"):
        build(POSITION_ENCODING_REGISTRY, name, cfg)


def test_sine_from_default_config():
    encoding = build(POSITION_ENCODING_REGISTRY, "PositionEmbeddingSine", get_cfg())
    assert (encoding.num_pos_feats, encoding.temperature, encoding.normalize) == (128, 10000, True)
    assert (encoding.scale, encoding.offset) == (pytest.approx(2 * math.pi), -0.5)
