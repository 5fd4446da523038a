"""Deprecated config keys: the value the current keys give loads with a warning; another is refused."""
import pytest

from ddetr_plugin.config import get_cfg, load_config
from ddetr_plugin.config.deprecated import DEPRECATED_KEYS


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "old.yaml"
    path.write_text(text)
    return str(path)


def test_equal_values_in_a_file_load_with_a_warning_naming_the_file(tmp_path):
    path = _write(tmp_path, "MODEL:\n  TRANSFORMER: {D_MODEL: 64}\n  POSITION_ENCODING: {NUM_POS_FEATS: 32}\n"
                            "  MATCHER: {FOCAL_ALPHA: 0.3, FOCAL_GAMMA: 1.5}\n"
                            "  CRITERION: {FOCAL_ALPHA: 0.3, FOCAL_GAMMA: 1.5}\n")
    with pytest.warns(FutureWarning) as record:
        cfg = load_config(path)
    messages = [str(w.message) for w in record]
    assert len(messages) == 3 and all(path in message for message in messages)
    assert any("NUM_POS_FEATS" in message and "D_MODEL / 2" in message for message in messages)
    assert (cfg.MODEL.TRANSFORMER.D_MODEL, cfg.MODEL.CRITERION.FOCAL_ALPHA, cfg.MODEL.CRITERION.FOCAL_GAMMA) == \
        (64, 0.3, 1.5)
    for deprecated in DEPRECATED_KEYS:
        section, leaf = deprecated.key.rsplit(".", 1)
        assert leaf not in cfg.MODEL[section.split(".")[1]]


@pytest.mark.parametrize("opts, match", [
    (["MODEL.POSITION_ENCODING.NUM_POS_FEATS", "64"],
     r"NUM_POS_FEATS \(set to 64 in the command-line overrides\).*D_MODEL / 2 = 128.*set MODEL.TRANSFORMER.D_MODEL"),
    (["MODEL.MATCHER.FOCAL_ALPHA", "0.5"], r"FOCAL_ALPHA \(set to 0.5 .*MODEL.CRITERION.FOCAL_ALPHA = 0.25"),
    (["MODEL.CRITERION.FOCAL_GAMMA", "1.0", "MODEL.MATCHER.FOCAL_GAMMA", "2.0"],
     r"MATCHER.FOCAL_GAMMA \(set to 2.0 .*MODEL.CRITERION.FOCAL_GAMMA = 1.0"),
])
def test_a_value_the_model_cannot_honour_is_refused(opts, match):
    with pytest.raises(ValueError, match=match):
        load_config(None, opts)


def test_a_file_with_another_value_is_named(tmp_path):
    path = _write(tmp_path, "MODEL:\n  POSITION_ENCODING: {NUM_POS_FEATS: 64}\n")
    with pytest.raises(ValueError, match=f"set to 64 in {path}"):
        load_config(path)


def test_fvcore_merges_skip_the_deprecated_keys(tmp_path):
    path = _write(tmp_path, "MODEL:\n  POSITION_ENCODING: {NUM_POS_FEATS: 128}\n")
    cfg = get_cfg()
    cfg.merge_from_file(path)
    cfg.merge_from_list(["MODEL.MATCHER.FOCAL_ALPHA", "0.25"])
    assert "NUM_POS_FEATS" not in cfg.MODEL.POSITION_ENCODING and "FOCAL_ALPHA" not in cfg.MODEL.MATCHER


def test_a_key_without_effect_loads_with_a_warning_whatever_its_value():
    with pytest.warns(FutureWarning, match="IM2COL_STEP in the command-line overrides .* no effect"):
        cfg = load_config(None, ["MODEL.TRANSFORMER.IM2COL_STEP", "128"])
    assert "IM2COL_STEP" not in cfg.MODEL.TRANSFORMER
