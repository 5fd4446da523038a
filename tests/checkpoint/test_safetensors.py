"""Weights as .safetensors: MODEL.WEIGHTS loads them without unpickling, --to safetensors and the metadata."""
import json

import pytest
import torch

from ddetr_plugin.checkpoint import CheckpointFormatError, Checkpointer
from ddetr_plugin.checkpoint.safetensors_file import (CLASS_NAMES_KEY, load_safetensors, safetensors_config,
                                                      save_safetensors)
from ddetr_plugin.modeling import build_model

from tests._support.tiny_configs import dump_config, tiny_cfg
from tests._support.tiny_models import assert_same_tensors, perturbed_model
from tests._support.tool_scripts import load_tool
from tests._support.untrusted_pickles import Payload

safetensors = pytest.importorskip("safetensors.torch")
NAMES = ["ant", "bee", "cat", "dog", "eel"]


def test_model_weights_accepts_safetensors_with_shared_heads(tmp_path):
    cfg = tiny_cfg("plain")  # one class/box head shared by every decoder layer
    state = perturbed_model(cfg).state_dict()
    path = str(tmp_path / "model.safetensors")
    save_safetensors(path, state, config=cfg.dump(), class_names=NAMES)

    model = build_model(cfg)
    extra = Checkpointer(model).load(path, checkpointables=[])
    assert_same_tensors(model.state_dict(), state)
    assert model.class_embed[0] is model.class_embed[1]
    assert extra["class_names"] == NAMES

    rebuilt = safetensors_config(path)  # the metadata's config builds the same model, weights from the file
    assert rebuilt.MODEL.WEIGHTS == path and rebuilt.MODEL.NUM_CLASSES == len(NAMES)
    other = build_model(rebuilt)
    Checkpointer(other).load(rebuilt.MODEL.WEIGHTS, checkpointables=[])
    assert_same_tensors(other.state_dict(), state)


def test_a_stored_config_with_deprecated_keys_is_checked(tmp_path):
    cfg = tiny_cfg("plain")
    state = perturbed_model(cfg).state_dict()
    path = str(tmp_path / "older.safetensors")

    def store_matcher_alpha(alpha: float) -> None:  # as files written before the key was deprecated
        older = cfg.dump().replace("  MATCHER:\n", f"  MATCHER:\n    FOCAL_ALPHA: {alpha}\n")
        save_safetensors(path, state, config=older, class_names=NAMES)

    store_matcher_alpha(0.25)
    with pytest.warns(FutureWarning, match="MATCHER.FOCAL_ALPHA in the config in the metadata of"):
        assert safetensors_config(path).MODEL.CRITERION.FOCAL_ALPHA == 0.25
    store_matcher_alpha(0.5)
    with pytest.raises(ValueError, match=r"MATCHER.FOCAL_ALPHA \(set to 0.5 in the config in the metadata"):
        safetensors_config(path)


def test_convert_to_safetensors_stores_config_and_names(tmp_path):
    cfg = tiny_cfg("box_refine", "DATASETS.TEST", "[]")
    state = perturbed_model(cfg).state_dict()
    torch.save({"model": state, "class_names": NAMES, "iteration": 9}, tmp_path / "model_final.pth")
    config = dump_config(cfg, tmp_path / "model.yaml")
    output = tmp_path / "model_final.safetensors"
    load_tool("convert_checkpoint").main(["--to", "safetensors", "--config", config,
                                          "--input", str(tmp_path / "model_final.pth"), "--output", str(output)])
    loaded = load_safetensors(str(output))
    assert_same_tensors(loaded["model"], state)
    assert loaded["class_names"] == NAMES
    assert safetensors_config(str(output)).MODEL.WITH_BOX_REFINE is True


def test_pickle_impostor_is_refused_and_never_runs(tmp_path):
    cfg = tiny_cfg("plain")
    marker = tmp_path / "pwned"
    impostor = tmp_path / "model.safetensors"
    torch.save({"model": perturbed_model(cfg).state_dict(), "extra": Payload(str(marker))}, impostor)
    with pytest.raises(CheckpointFormatError, match="not a safetensors file.*it was not unpickled"):
        Checkpointer(build_model(cfg)).load(str(impostor), checkpointables=[])
    assert not marker.exists()


def test_truncated_and_bad_metadata(tmp_path):
    cfg = tiny_cfg("plain")
    path = tmp_path / "model.safetensors"
    save_safetensors(str(path), perturbed_model(cfg).state_dict())
    data = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointFormatError, match="truncated.safetensors.*truncated or corrupt"):
        Checkpointer(build_model(cfg)).load(str(truncated), checkpointables=[])

    bad = tmp_path / "bad_names.safetensors"
    safetensors.save_file({"x": torch.zeros(1)}, str(bad), metadata={CLASS_NAMES_KEY: json.dumps({"0": "a"})})
    with pytest.raises(CheckpointFormatError, match="must be a JSON list of strings"):
        load_safetensors(str(bad))
    with pytest.raises(CheckpointFormatError, match="no config in its metadata"):
        safetensors_config(str(path))
