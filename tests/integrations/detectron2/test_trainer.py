"""detectron2's trainer on the Deformable DETR meta-architecture: training lowers the loss, periodic
checkpoints resume, the DETR optimizer and augmentation, and tools/train_detectron2.py on 1 and 2 CPU
processes with --eval-only printing detectron2's COCO table."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests._support.detectron2_models import register_tiny_shapes, tiny_cfg  # noqa: I001  (skips without detectron2)

from detectron2.data import transforms as T

from ddetr_plugin.integrations.detectron2 import Trainer, build_detr_train_augmentation, with_full_model_clipping
from ddetr_plugin.integrations.detectron2.conversion import save_detectron2_config, to_detectron2
from ddetr_plugin.modeling import build_model

from tests._support.paths import ROOT


def _training_cfg(tmp_path, **solver):
    train, val = register_tiny_shapes(tmp_path / "datasets")
    cfg = tiny_cfg("two_stage")
    _, d2_cfg = to_detectron2(build_model(cfg).state_dict(), cfg)
    d2_cfg.DATASETS.TRAIN, d2_cfg.DATASETS.TEST = [train], [val]
    d2_cfg.INPUT.MIN_SIZE_TRAIN, d2_cfg.INPUT.MAX_SIZE_TRAIN = [48, 64], 64
    d2_cfg.INPUT.MIN_SIZE_TEST, d2_cfg.INPUT.MAX_SIZE_TEST = 64, 64
    d2_cfg.DATALOADER.NUM_WORKERS = 0
    d2_cfg.SOLVER.IMS_PER_BATCH, d2_cfg.SOLVER.BASE_LR = 4, 1e-3
    for key, value in solver.items():
        d2_cfg.SOLVER[key] = value
    d2_cfg.OUTPUT_DIR = str(tmp_path / "output")
    return d2_cfg


def test_training_lowers_the_loss_and_resumes_from_its_checkpoint(tmp_path):
    cfg = _training_cfg(tmp_path, MAX_ITER=16, STEPS=[14], CHECKPOINT_PERIOD=8)
    torch.manual_seed(0)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    losses = [value for value, _ in trainer.storage.history("total_loss").values()]
    assert len(losses) == 16 and np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4])
    assert (tmp_path / "output" / "model_0000007.pth").is_file()
    assert (tmp_path / "output" / "last_checkpoint").read_text() == "model_final.pth"

    cfg.defrost()
    cfg.SOLVER.MAX_ITER = 18
    resumed = Trainer(cfg)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 16
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    assert resumed.optimizer.state_dict()["state"].keys() == trainer.optimizer.state_dict()["state"].keys()


def test_optimizer_has_the_official_groups_and_clips_the_whole_model(tmp_path):
    cfg = _training_cfg(tmp_path)
    cfg.SOLVER.BACKBONE_LR_MULTIPLIER = 0.1
    model = Trainer.build_model(cfg)
    optimizer = Trainer.build_optimizer(cfg, model)
    assert isinstance(optimizer, torch.optim.AdamW)
    lrs = {group["name"]: group["lr"] for group in optimizer.param_groups}
    assert lrs == pytest.approx({"base": 1e-3, "backbone": 1e-4, "linear_proj": 1e-4})
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    for parameter in parameters:
        parameter.grad = torch.ones_like(parameter)
    before = [p.detach().clone() for p in parameters]
    optimizer.step()
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in parameters]))
    assert total == pytest.approx(0.1, rel=1e-3)  # one norm over all parameters, clipped to CLIP_VALUE
    assert all(not torch.equal(b, p) for b, p in zip(before, parameters))


def test_full_model_clipping_sees_unscaled_gradients_under_a_grad_scaler():
    parameter = torch.nn.Parameter(torch.zeros(4))
    optimizer = with_full_model_clipping(torch.optim.SGD, 0.5)([parameter], lr=1.0, fused=True)
    assert type(optimizer).__name__ == "SGDWithFullModelGradientClipping"
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    scaler.scale((parameter * 3.0).sum()).backward()  # gradient norm 6, scaled by 1024
    scaler.step(optimizer)
    # clipped to 0.5 after unscaling; a fused step that unscales inside would move it by 0.5 / 1024
    assert torch.linalg.vector_norm(parameter.detach()) == pytest.approx(0.5, rel=1e-4)


def test_augmentation_is_flip_then_resize_or_resize_crop_resize(tmp_path):
    cfg = _training_cfg(tmp_path)
    cfg.INPUT.CROP.ENABLED = True
    cfg.INPUT.CROP.SIZE, cfg.INPUT.CROP.RESIZE = [20, 30], [40]
    flip, choice = build_detr_train_augmentation(cfg)
    assert isinstance(flip, T.RandomFlip)
    image = np.zeros((64, 96, 3), dtype=np.uint8)
    sizes = set()
    np.random.seed(0)
    for _ in range(40):
        aug_input = T.AugInput(image.copy(), boxes=np.array([[10.0, 10.0, 30.0, 30.0]]))
        transforms = choice(aug_input)
        kinds = tuple(type(t).__name__ for t in transforms.transforms)
        sizes.add(aug_input.image.shape[:2])
        assert kinds in {("ResizeTransform",), ("ResizeTransform", "CropTransform", "ResizeTransform"),
                         ("CropTransform", "ResizeTransform")}, kinds  # a resize to the same size is dropped
        assert max(aug_input.image.shape[:2]) <= 64
    assert len(sizes) > 2  # the crop branch gives other aspect ratios


# tools/train_detectron2.py with the tiny datasets registered first, as a user's own script registers its
# datasets: the processes that detectron2's launch spawns import this file again
_SCRIPT = """
import os, sys
from pathlib import Path
sys.path.insert(0, os.path.join(os.environ["DDETR_ROOT"], "tools"))
from tests._support.detectron2_models import register_tiny_shapes
register_tiny_shapes(Path(os.environ["DDETR_DATASETS"]))
import train_detectron2
if __name__ == "__main__":
    train_detectron2.cli()
"""


def _tool(tmp_path, config, *args, timeout=400):
    script = tmp_path / "train_tiny.py"
    script.write_text(_SCRIPT)
    env = dict(os.environ, DDETR_DATASETS=str(tmp_path / "datasets"), DDETR_ROOT=str(ROOT), OMP_NUM_THREADS="1",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, str(script), "--config-file", str(config), *args]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.mark.slow
def test_train_detectron2_on_two_cpu_processes_then_eval_only(tmp_path):
    cfg = _training_cfg(tmp_path, MAX_ITER=2, STEPS=[1], CHECKPOINT_PERIOD=100)
    cfg.SOLVER.IMS_PER_BATCH = 2
    config = tmp_path / "tiny_d2.yaml"
    save_detectron2_config(str(config), cfg)
    log = _tool(tmp_path, config, "--num-gpus", "2")
    assert "Starting training from iteration 0" in log
    weights = tmp_path / "output" / "model_final.pth"
    assert weights.is_file()
    log = _tool(tmp_path, config, "--eval-only", "MODEL.WEIGHTS", str(weights), "OUTPUT_DIR",
                str(tmp_path / "eval"))
    assert "Evaluation results for bbox" in log and re.search(r"\| *AP *\| *AP50 *\| *AP75 *\|", log), log[-4000:]
    assert (tmp_path / "eval" / "inference" / "coco_instances_results.json").is_file()
