"""get_cfg / load_config: defaults, _BASE_ chains, overrides, IMPORTS and the error messages."""
import math
import sys
import textwrap
import uuid

import pytest
import torch

from ddetr_plugin.config import ConfigKeyError, get_cfg, load_config
from ddetr_plugin.registry import BACKBONE_REGISTRY


def write(path, text: str) -> str:
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_defaults_hold_the_official_setup():
    cfg = get_cfg()
    assert cfg.MODEL.BACKBONE.DEPTH == 50 and cfg.MODEL.BACKBONE.NORM == "FrozenBN"
    assert cfg.MODEL.NUM_FEATURE_LEVELS == 4 and cfg.MODEL.NUM_QUERIES == 300
    assert cfg.MODEL.POSITION_ENCODING.SCALE == pytest.approx(2 * math.pi)
    assert cfg.SOLVER.BASE_LR == pytest.approx(2e-4)
    assert cfg.IMPORTS == []
    assert not cfg.is_frozen()


def test_get_cfg_returns_independent_copies():
    first = get_cfg()
    first.MODEL.NUM_QUERIES = 7
    first.MODEL.BACKBONE.OUT_FEATURES.append("layer1")
    second = get_cfg()
    assert second.MODEL.NUM_QUERIES == 300
    assert second.MODEL.BACKBONE.OUT_FEATURES == ["layer2", "layer3", "layer4"]


def test_device_falls_back_to_cpu_without_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert get_cfg().MODEL.DEVICE == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert get_cfg().MODEL.DEVICE == "cuda"


def test_load_without_file_gives_frozen_defaults_with_overrides():
    cfg = load_config(None, ["SOLVER.BASE_LR", "0.001", "MODEL.BACKBONE.OUT_FEATURES", "['layer4']"])
    assert cfg.is_frozen()
    assert cfg.SOLVER.BASE_LR == pytest.approx(1e-3)
    assert cfg.MODEL.BACKBONE.OUT_FEATURES == ["layer4"]
    assert cfg.MODEL.NUM_QUERIES == 300


def test_base_chain_is_followed_relative_to_the_including_file(tmp_path):
    (tmp_path / "bases").mkdir()
    write(tmp_path / "bases" / "root.yaml", """
        MODEL:
          NUM_QUERIES: 100
          TRANSFORMER:
            ENC_LAYERS: 2
    """)
    write(tmp_path / "bases" / "middle.yaml", """
        _BASE_: root.yaml
        MODEL:
          NUM_QUERIES: 50
          TRANSFORMER:
            DEC_LAYERS: 3
    """)
    child = write(tmp_path / "child.yaml", """
        _BASE_: bases/middle.yaml
        MODEL:
          TWO_STAGE: True
    """)
    cfg = load_config(child, ["MODEL.TRANSFORMER.DEC_LAYERS", "4"])
    assert cfg.MODEL.NUM_QUERIES == 50  # middle overrides root
    assert cfg.MODEL.TRANSFORMER.ENC_LAYERS == 2  # from root
    assert cfg.MODEL.TRANSFORMER.DEC_LAYERS == 4  # the override beats the files
    assert cfg.MODEL.TWO_STAGE is True
    assert cfg.MODEL.TRANSFORMER.D_MODEL == 256  # untouched default


def test_list_of_bases_merges_in_order(tmp_path):
    write(tmp_path / "a.yaml", "SEED: 1\nOUTPUT_DIR: a\n")
    write(tmp_path / "b.yaml", "SEED: 2\n")
    write(tmp_path / "child.yaml", "_BASE_: [a.yaml, b.yaml]\n")
    cfg = load_config(tmp_path / "child.yaml")  # a path-like works too
    assert (cfg.SEED, cfg.OUTPUT_DIR) == (2, "a")


def test_imports_register_a_user_component(tmp_path, monkeypatch):
    module = f"user_backbone_{uuid.uuid4().hex}"
    class_name = f"UserBackbone{uuid.uuid4().hex}"
    write(tmp_path / f"{module}.py", f"""
        from torch import nn
        from ddetr_plugin.registry import BACKBONE_REGISTRY

        @BACKBONE_REGISTRY.register()
        class {class_name}(nn.Module):
            pass
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = write(tmp_path / "user.yaml", f"""
        IMPORTS: [{module}]
        MODEL:
          BACKBONE:
            NAME: {class_name}
    """)
    try:
        cfg = load_config(config)
        assert class_name in BACKBONE_REGISTRY
        assert cfg.MODEL.BACKBONE.NAME == class_name
    finally:
        BACKBONE_REGISTRY._obj_map.pop(class_name, None)
        sys.modules.pop(module, None)


def test_missing_config_file_is_named(tmp_path):
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(missing)


def test_missing_base_names_the_base_and_the_including_file(tmp_path):
    child = write(tmp_path / "child.yaml", "_BASE_: gone.yaml\n")
    with pytest.raises(FileNotFoundError) as info:
        load_config(child)
    assert "gone.yaml" in str(info.value) and "child.yaml" in str(info.value)


def test_base_cycle_is_reported(tmp_path):
    write(tmp_path / "a.yaml", f"_BASE_: {tmp_path / 'b.yaml'}\n")  # absolute and relative names of one file
    b = write(tmp_path / "b.yaml", "_BASE_: a.yaml\n")
    with pytest.raises(ValueError, match="cycle"):
        load_config(b)


def test_unknown_key_names_key_file_and_close_match(tmp_path):
    write(tmp_path / "base.yaml", "MODEL:\n  BACKBONE:\n    DEPHT: 18\n")
    child = write(tmp_path / "child.yaml", "_BASE_: base.yaml\nSEED: 3\n")
    with pytest.raises(KeyError) as info:
        load_config(child)
    message = str(info.value)
    assert "MODEL.BACKBONE.DEPHT" in message
    assert "base.yaml" in message and "child.yaml" not in message  # the file that has the key
    assert "did you mean 'MODEL.BACKBONE.DEPTH'" in message


def test_key_in_the_wrong_section_suggests_the_right_one(tmp_path):
    config = write(tmp_path / "c.yaml", "MODEL:\n  D_MODEL: 128\n")
    with pytest.raises(ConfigKeyError, match=r"'MODEL\.D_MODEL'.*did you mean 'MODEL\.TRANSFORMER\.D_MODEL'"):
        load_config(config)


def test_unknown_override_key_names_the_overrides():
    with pytest.raises(KeyError) as info:
        load_config(None, ["SOLVER.BASE_LRR", "0.1"])
    assert "SOLVER.BASE_LRR" in str(info.value) and "command-line overrides" in str(info.value)
    assert "SOLVER.BASE_LR'" in str(info.value)


def test_wrong_type_names_key_expected_type_and_value(tmp_path):
    config = write(tmp_path / "c.yaml", "SOLVER:\n  BASE_LR: 1\n")
    with pytest.raises(ValueError) as info:
        load_config(config)
    message = str(info.value)
    for part in ("c.yaml", "SOLVER.BASE_LR", "expects float", "int 1"):
        assert part in message


def test_wrong_type_in_overrides_and_sections(tmp_path):
    with pytest.raises(ValueError, match=r"'DATASETS\.TRAIN' expects list.*str 'coco_2017_train'"):
        load_config(None, ["DATASETS.TRAIN", "coco_2017_train"])
    with pytest.raises(ValueError, match=r"'MODEL\.BACKBONE' is a section"):
        load_config(write(tmp_path / "c.yaml", "MODEL:\n  BACKBONE: 50\n"))
    with pytest.raises(ValueError, match=r"'MODEL\.TWO_STAGE' expects bool.*None"):
        load_config(write(tmp_path / "d.yaml", "MODEL:\n  TWO_STAGE:\n"))


def test_odd_length_overrides_are_refused():
    with pytest.raises(ValueError, match="odd number"):
        load_config(None, ["SOLVER.BASE_LR", "0.1", "SEED"])


def test_import_failure_names_module_and_config_file(tmp_path):
    config = write(tmp_path / "c.yaml", "IMPORTS: [no_such_module_for_ddetr_tests]\n")
    with pytest.raises(ImportError) as info:
        load_config(config)
    assert "no_such_module_for_ddetr_tests" in str(info.value) and "c.yaml" in str(info.value)


def test_malformed_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="empty.yaml"):
        load_config(write(tmp_path / "empty.yaml", ""))
    with pytest.raises(ValueError, match="broken.yaml"):
        load_config(write(tmp_path / "broken.yaml", "MODEL: [unclosed\n"))
