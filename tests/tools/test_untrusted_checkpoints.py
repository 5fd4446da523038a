"""A checkpoint carrying pickled code is refused by every entry point that loads weights, before it runs."""
import numpy as np
import pytest
import torch
from PIL import Image

from ddetr_plugin.checkpoint import UnsafeCheckpointError

from tests._support.tiny_configs import dump_config, tiny_cfg
from tests._support.tiny_models import perturbed_model
from tests._support.tool_scripts import load_tool
from tests._support.untrusted_pickles import Payload


@pytest.fixture
def evil(tmp_path):
    """(config path with MODEL.WEIGHTS at a booby-trapped checkpoint, marker path, an image path)."""
    cfg = tiny_cfg("plain", "INPUT.MIN_SIZE_TEST", 64, "INPUT.MAX_SIZE_TEST", 96)
    marker = tmp_path / "pwned"
    weights = tmp_path / "evil.pth"
    torch.save({"model": perturbed_model(cfg).state_dict(), "extra": Payload(str(marker))}, weights)
    cfg.MODEL.WEIGHTS = str(weights)
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((64, 80, 3), dtype=np.uint8)).save(image)
    return dump_config(cfg, tmp_path / "evil.yaml"), marker, str(image)


def test_demo_refuses_it(tmp_path, evil):
    config, marker, image = evil
    with pytest.raises(UnsafeCheckpointError, match="evil.pth"):
        load_tool("demo").main(["--config", config, "--input", image, "--output", str(tmp_path / "out")])
    assert not marker.exists()


def test_eval_only_refuses_it(tmp_path, evil):
    config, marker, _ = evil
    args = load_tool("train_net").default_argument_parser().parse_args(
        ["--config-file", config, "--eval-only", "OUTPUT_DIR", str(tmp_path / "eval")]
    )
    with pytest.raises(UnsafeCheckpointError, match="evil.pth"):
        load_tool("train_net").main(args)
    assert not marker.exists()


def test_converter_refuses_it(tmp_path, evil):
    config, marker, _ = evil
    with pytest.raises((UnsafeCheckpointError, SystemExit)) as info:
        load_tool("convert_checkpoint").main(["--to", "official", "--config", config, "--output",
                                              str(tmp_path / "official.pth")])
    assert "evil.pth" in str(info.value.code if isinstance(info.value, SystemExit) else info.value)
    assert not marker.exists()
