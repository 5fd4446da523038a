"""detectron2's ``DefaultTrainer`` for Deformable DETR: the DETR optimizer and augmentation, ``COCOEvaluator``.

Everything else is detectron2's: hooks, ``EventStorage`` metrics, ``DetectionCheckpointer`` periodic
checkpoints and ``resume_or_load``, the LR schedule (``SOLVER.STEPS``, warm-up), AMP
(``SOLVER.AMP.ENABLED``, CUDA only in detectron2) and ``launch`` for several processes.
"""
import os
import weakref

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_train_loader
from detectron2.engine import AMPTrainer, DefaultTrainer, SimpleTrainer, create_ddp_model
from detectron2.engine.train_loop import TrainerBase
from detectron2.evaluation import COCOEvaluator
from detectron2.solver.build import maybe_add_gradient_clipping
from detectron2.utils import comm

from ddetr_plugin.engine.optimizer import build_optimizer

from .config import FULL_MODEL, to_ddetr_cfg
from .data import build_detr_train_mapper


def with_full_model_clipping(optimizer_cls: type, max_norm: float) -> type:
    """A subclass of ``optimizer_cls`` whose ``step`` first clips the gradient norm of all its
    parameters together to ``max_norm`` (the official DETR clipping, unlike detectron2's per-parameter
    "value"/"norm" clipping)."""

    class FullModelGradientClipping(optimizer_cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # a GradScaler must unscale the gradients before step (a fused optimizer would otherwise
            # receive them scaled, and clip them scaled)
            self._step_supports_amp_scaling = False

        def step(self, closure=None):
            parameters = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(parameters, max_norm)
            return super().step(closure=closure)

    FullModelGradientClipping.__name__ = f"{optimizer_cls.__name__}WithFullModelGradientClipping"
    FullModelGradientClipping.__qualname__ = FullModelGradientClipping.__name__
    return FullModelGradientClipping


class Trainer(DefaultTrainer):
    """``DefaultTrainer`` with the DETR optimizer, augmentation and evaluator.

    The model is wrapped in DDP without ``device_ids`` on the CPU (detectron2's default passes the
    local rank, which DDP accepts for CUDA models only), so several CPU processes train on gloo.
    """

    def __init__(self, cfg: CfgNode):
        TrainerBase.__init__(self)
        cfg = self.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        cpu = next(model.parameters()).device.type == "cpu"
        model = create_ddp_model(model, broadcast_buffers=False,
                                 find_unused_parameters=cfg.SOLVER.DDP_FIND_UNUSED_PARAMETERS,
                                 **({"device_ids": None} if cpu else {}))
        self._trainer = (AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer)(model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = DetectionCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    @classmethod
    def build_optimizer(cls, cfg: CfgNode, model: torch.nn.Module) -> torch.optim.Optimizer:
        """AdamW with the official parameter groups (``engine/optimizer.py``) and the configured clipping:
        ``CLIP_TYPE: full_model`` clips the norm of all gradients together at ``CLIP_VALUE``; detectron2's
        "value"/"norm" types clip per parameter as for any detectron2 model."""
        if cfg.SOLVER.OPTIMIZER.upper() != "ADAMW":
            raise ValueError(f"SOLVER.OPTIMIZER is {cfg.SOLVER.OPTIMIZER!r}; the Deformable DETR trainer uses 'ADAMW'")
        clipping = cfg.SOLVER.CLIP_GRADIENTS
        if clipping.ENABLED and clipping.CLIP_TYPE == FULL_MODEL:
            optimizer_cls = with_full_model_clipping(torch.optim.AdamW, clipping.CLIP_VALUE)
        else:
            optimizer_cls = maybe_add_gradient_clipping(cfg, torch.optim.AdamW)
        return build_optimizer(to_ddetr_cfg(cfg), model, optimizer_cls)

    @classmethod
    def build_train_loader(cls, cfg: CfgNode):
        return build_detection_train_loader(cfg, mapper=build_detr_train_mapper(cfg))

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None) -> COCOEvaluator:
        if not hasattr(MetadataCatalog.get(dataset_name), "json_file"):
            DatasetCatalog.get(dataset_name)  # a dataset of our catalog sets it when first loaded
        return COCOEvaluator(dataset_name, output_dir=output_folder or os.path.join(cfg.OUTPUT_DIR, "inference"))
