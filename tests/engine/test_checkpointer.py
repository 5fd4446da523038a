"""Checkpointer: safe loading (weights_only, allow-list), atomic saves, keep-last-N, mismatch reports."""
import argparse
import logging
import os

import pytest
import torch
from torch import nn

from ddetr_plugin.checkpoint import CheckpointFormatError, Checkpointer, UnsafeCheckpointError, load_checkpoint_file

from tests._support.untrusted_pickles import Payload

LOGGER = "ddetr_plugin.checkpoint.checkpointer"


class Head(nn.Module):
    def __init__(self, num_classes: int = 2, layers: int = 2):
        super().__init__()
        self.body = nn.Linear(8, 8)
        self.class_embed = nn.ModuleList(nn.Linear(8, num_classes) for _ in range(layers))


def test_pickled_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = str(tmp_path / "evil.pth")
    torch.save({"model": Head().state_dict(), "extra": Payload(str(marker))}, path)

    with pytest.raises(UnsafeCheckpointError) as info:
        Checkpointer(Head()).load(path)
    message = str(info.value)
    assert path in message and "refusing" in message and "_touch" in message
    assert not marker.exists()
    # the payload is live: a trusting load would have run it
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_official_style_checkpoint_with_namespace_args_loads(tmp_path):
    source = Head()
    path = str(tmp_path / "official.pth")
    torch.save({"model": source.state_dict(), "optimizer": {"state": {}, "param_groups": []},
                "lr_scheduler": {"last_epoch": 50}, "epoch": 49,
                "args": argparse.Namespace(lr=2e-4, lr_backbone_names=["backbone.0"], two_stage=False)}, path)
    assert isinstance(load_checkpoint_file(path)["args"], argparse.Namespace)
    model = Head()
    extra = Checkpointer(model).load(path, checkpointables=[])
    assert extra["epoch"] == 49 and extra["args"].lr == 2e-4
    assert torch.equal(model.body.weight, source.body.weight)


def test_class_head_mismatch_says_how_to_fix(tmp_path, caplog):
    source = Head(num_classes=91)
    path = str(tmp_path / "coco.pth")
    torch.save({"model": source.state_dict()}, path)
    model = Head(num_classes=2)
    initial_head = model.class_embed[0].weight.clone()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        Checkpointer(model).load(path)
    text = caplog.text
    for key in ("class_embed.0.weight", "class_embed.0.bias", "class_embed.1.weight"):
        assert f"'{key}'" in text  # one line per mismatching key
    assert "(91, 8) in the checkpoint, (2, 8) in the model" in text
    assert "checkpoint has 91 classes, the model 2" in text and "set MODEL.NUM_CLASSES 91" in text
    assert torch.equal(model.body.weight, source.body.weight)  # everything else loaded
    assert torch.equal(model.class_embed[0].weight, initial_head)


def test_missing_and_unexpected_keys_are_named(tmp_path, caplog):
    state = Head().state_dict()
    state.pop("body.bias")
    state["old_layer.weight"] = torch.zeros(1)
    path = str(tmp_path / "partial.pth")
    torch.save({"model": state}, path)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        Checkpointer(Head()).load(path)
    assert "body.bias" in caplog.text and "not found in the checkpoint" in caplog.text
    assert "old_layer.weight" in caplog.text and "not used by the model" in caplog.text


@pytest.mark.parametrize("content, match", [(b"PK\x03\x04 truncated", "cannot read"), (None, "'model' entry")])
def test_unreadable_or_wrong_format(tmp_path, content, match):
    path = str(tmp_path / "bad.pth")
    if content is None:
        torch.save(Head().state_dict(), path)  # a bare state dict, no "model" entry
    else:
        with open(path, "wb") as f:
            f.write(content)
    with pytest.raises(CheckpointFormatError, match=match) as info:
        Checkpointer(Head()).load(path)
    assert path in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pth"):
        Checkpointer(Head()).load(str(tmp_path / "nothere.pth"))


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model = Head()
    checkpointer = Checkpointer(model, str(tmp_path))
    checkpointer.save("model_0000000", iteration=0)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.body.weight.add_(1.0)

    real_save = torch.save

    def crash_midway(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(f.tell() // 2)  # half of the bytes are on disk, then the process "dies"
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        checkpointer.save("model_0000001", iteration=1)
    monkeypatch.undo()

    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000000.pth"]  # no torn or temp file
    assert checkpointer.get_checkpoint_file() == os.path.join(str(tmp_path), "model_0000000.pth")
    fresh = Head()
    extra = Checkpointer(fresh, str(tmp_path)).resume_or_load("", resume=True)
    assert extra["iteration"] == 0
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in saved.items())


def test_non_finite_weights_are_never_saved(tmp_path):
    model = Head()
    checkpointer = Checkpointer(model, str(tmp_path))
    checkpointer.save("model_0000000")
    with torch.no_grad():
        model.class_embed[1].bias[0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"model\.class_embed\.1\.bias"):
        checkpointer.save("model_0000001")
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000000.pth"]
    assert open(tmp_path / "last_checkpoint").read() == "model_0000000.pth"


def test_keep_last_n_periodic_checkpoints_across_restarts(tmp_path):
    model = Head()
    checkpointer = Checkpointer(model, str(tmp_path), max_to_keep=2)
    for iteration in range(3):
        checkpointer.save(f"model_{iteration:07d}", iteration=iteration)
    # a resumed run: a new Checkpointer still sees the older files
    checkpointer = Checkpointer(model, str(tmp_path), max_to_keep=2)
    for iteration in range(3, 5):
        checkpointer.save(f"model_{iteration:07d}", iteration=iteration)
    checkpointer.save("model_final", iteration=4)
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000003.pth", "model_0000004.pth",
                                            "model_final.pth"]
    assert open(tmp_path / "last_checkpoint").read() == "model_final.pth"


def test_save_to_disk_false_writes_nothing(tmp_path):
    Checkpointer(Head(), str(tmp_path), save_to_disk=False).save("model_final")
    assert os.listdir(tmp_path) == []
