"""mmengine's Runner trains, checkpoints, resumes and validates PluginDeformableDETR; torchrun with two processes."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests._support.install_hints import MMDET_MISSING

pytest.importorskip("mmdet", reason=MMDET_MISSING)

from mmengine.runner import Runner  # noqa: E402

from tests._support.mmdet_runner import tiny_runner_config  # noqa: E402
from tests._support.paths import ROOT  # noqa: E402


def test_runner_trains_checkpoints_resumes_and_validates(tmp_path):
    runner = Runner.from_cfg(tiny_runner_config(tmp_path, max_iters=10, checkpoint_interval=5))
    runner.train()
    losses = runner.message_hub.get_scalar("train/loss").data[0]
    assert len(losses) == 10 and sum(losses[-3:]) < 0.9 * sum(losses[:3])
    assert {"loss_cls", "d0.loss_bbox", "enc_loss_iou"} <= {key.split("/", 1)[1] for key in
                                                            runner.message_hub.log_scalars if key.startswith("train/")}
    work_dir = Path(runner.work_dir)
    assert (work_dir / "iter_5.pth").is_file() and (work_dir / "iter_10.pth").is_file()
    first_map = runner.message_hub.get_scalar("val/coco/bbox_mAP").current()

    # a checkpoint the Runner wrote: its message hub pickles HistoryBuffer objects with numpy arrays
    cfg = tiny_runner_config(tmp_path, max_iters=12, checkpoint_interval=5)
    cfg.update(resume=True, experiment_name="resumed")
    resumed = Runner.from_cfg(cfg)
    resumed.train()
    assert resumed.iter == 12
    history = resumed.message_hub.get_scalar("train/loss").data[0]
    assert len(history) == 12 and list(history[:10]) == list(losses)  # restored, then continued
    metrics = resumed.val()
    assert 0.0 <= metrics["coco/bbox_mAP"] <= 1.0 and first_map >= 0.0


def test_torchrun_two_processes(tmp_path):
    config = tmp_path / "tiny.py"
    tiny_runner_config(tmp_path, max_iters=2, checkpoint_interval=2, val=False, log_level="INFO").dump(
        str(config))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               str(ROOT / "tools" / "train_mmdet.py"), str(config), "--launcher", "pytorch"]
    # a session of its own, so that a hang kills both workers, not only torchrun
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    assert process.returncode == 0, output[-6000:]
    logs = "".join(path.read_text() for path in (tmp_path / "work_dir").rglob("*.log"))
    assert "Distributed training: True" in logs and "GPU number: 2" in logs
    assert (tmp_path / "work_dir" / "iter_2.pth").is_file()
