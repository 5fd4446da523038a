"""tools/train_net.py end to end on a tiny model and a tiny shapes dataset (CPU).

2 gloo processes end where 1 process ends at the same total batch; a run killed with SIGKILL after its
second checkpoint and resumed ends with the weights of an uninterrupted run; --eval-only writes its results;
config mistakes stop before any work.
"""
import math
import os
import signal
import subprocess
import time

import pytest
import torch

from ddetr_plugin.checkpoint.safetensors_file import load_safetensors

from tests._support.paths import ROOT
from tests._support.tool_scripts import load_tool
from tests._support.train_net_runs import run_train_net, train_net_command, train_net_env


def _weights(path):
    return torch.load(path, weights_only=True)["model"]


@pytest.mark.slow
def test_two_processes_end_where_one_ends(run_dir):
    run_train_net(run_dir, "one", "SOLVER.CHECKPOINT_PERIOD", "0", "SOLVER.SAVE_SAFETENSORS", "True")
    run_train_net(run_dir, "two", "--num-gpus", "2", "SOLVER.CHECKPOINT_PERIOD", "0")
    assert "Rank 0 of 2" in (run_dir / "two" / "log.txt").read_text()
    one, two = _weights(run_dir / "one" / "model_final.pth"), _weights(run_dir / "two" / "model_final.pth")
    for key, value in one.items():
        torch.testing.assert_close(two[key], value, rtol=0, atol=1e-4, msg=key)
    # it trained: the class bias left its initial prior -log((1 - 0.01) / 0.01)
    initial_bias = torch.full_like(one["class_embed.0.bias"], -math.log(99))
    assert (one["class_embed.0.bias"] - initial_bias).abs().max() > 1e-4
    # the training set's class names travel in the checkpoint, and the final weights as safetensors too
    final = torch.load(run_dir / "one" / "model_final.pth", weights_only=True)
    assert final["class_names"] == ["circle", "square", "triangle", "cross"]
    exported = load_safetensors(str(run_dir / "one" / "model_final.safetensors"))
    assert exported["class_names"] == final["class_names"] and "SAVE_SAFETENSORS: true" in exported["config"]
    for key, value in one.items():
        assert torch.equal(exported["model"][key], value), key


@pytest.mark.slow
def test_sigkill_then_resume_ends_like_an_uninterrupted_run(run_dir):
    keep_one = ("SOLVER.MAX_TO_KEEP", "1")  # a checkpoint per iteration: keep the disk footprint small
    run_train_net(run_dir, "uninterrupted", *keep_one)

    process = subprocess.Popen(train_net_command(run_dir, "killed", *keep_one), cwd=ROOT, env=train_net_env(run_dir), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    last = run_dir / "killed" / "last_checkpoint"
    deadline = time.monotonic() + 180
    try:
        while not (last.exists() and last.read_text() == "model_0000001.pth"):  # the second checkpoint
            assert process.poll() is None, "the run ended before its second checkpoint"
            assert time.monotonic() < deadline, "no second checkpoint in time"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not (run_dir / "killed" / "model_final.pth").exists()

    run_train_net(run_dir, "killed", "--resume", *keep_one)
    expected = _weights(run_dir / "uninterrupted" / "model_final.pth")
    actual = _weights(run_dir / "killed" / "model_final.pth")
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, rtol=0, atol=1e-6, msg=key)

    # --eval-only on those weights writes the detections and prints the metrics
    result = run_train_net(run_dir, "eval", "--eval-only", "DATASETS.TEST", "['tiny_shapes_val']",
                  "MODEL.WEIGHTS", str(run_dir / "killed" / "model_final.pth"))
    assert (run_dir / "eval" / "inference" / "coco_instances_results.json").is_file()
    assert "copypaste: AP,AP50,AP75,APs,APm,APl" in result.stdout


def _train_net_module():
    return load_tool("train_net")


@pytest.mark.parametrize("extra, expected", [
    (["SOLVER.BASE_LRR", "0.1"], "unknown config key in the command-line overrides: 'SOLVER.BASE_LRR'"),
    (["MODEL.BACKBONE.NAME", "NoSuch"], "MODEL.BACKBONE.NAME: no component named 'NoSuch'"),
    (["SOLVER.MAX_ITER", "1.5"], "'SOLVER.MAX_ITER' expects int"),
    (["DATASETS.TEST", "['tiny_shapes_vall']"], "DATASETS.TEST: no dataset named 'tiny_shapes_vall'; registered:"),
    (["MODEL.LABEL_SPACE", "coco"], "MODEL.LABEL_SPACE must be one of 'contiguous', 'category_id', got 'coco'"),
    (["--eval-only"], "--eval-only needs weights"),
    (["MODEL.WEIGHTS", "/nonexistent/model.pth"], "MODEL.WEIGHTS: checkpoint file not found: /nonexistent/model.pth"),
])
def test_config_mistakes_stop_before_any_work(run_dir, monkeypatch, extra, expected):
    train_net = _train_net_module()
    monkeypatch.setattr(train_net, "launch", lambda *args, **kwargs: pytest.fail("work started"))
    with pytest.raises(SystemExit) as info:
        flags = [item for item in extra if item.startswith("--")]
        opts = [item for item in extra if not item.startswith("--")]
        train_net.cli(["--config-file", str(run_dir / "tiny.yaml"), *flags, *opts, "OUTPUT_DIR", str(run_dir / "never")])
    assert str(info.value.code).startswith("train_net.py: config error: ") and expected in str(info.value.code)
    assert not (run_dir / "never").exists()


def test_missing_config_file(tmp_path):
    with pytest.raises(SystemExit) as info:
        _train_net_module().cli(["--config", str(tmp_path / "nothere.yaml")])
    assert "nothere.yaml" in str(info.value.code)
