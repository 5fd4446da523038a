"""The Deformable DETR trainer: one training iteration (:meth:`Trainer.run_step`), its state, exact resume.

One iteration: next batch of this rank -> forward (under autocast when AMP is on) -> losses averaged over
processes -> backward (scaled for fp16) -> gradient norm clipped -> the ``after_backward`` hooks (the
non-finite guard) -> optimizer step. Everything else is a hook (``engine/hooks/``), called after each
iteration in this order: lr schedule step, EMA update, metrics record and log line every ``log_period``,
checkpoint every ``checkpoint_period``, evaluation every ``eval_period``, then the writers that follow the
metrics records (TensorBoard events, the training-curves PNG); after training: model_final.pth and a final
evaluation. User hooks come after these.

Iterations are numbered from 0; ``model_0004999.pth`` holds the state after iteration 4999 (5000 iterations
done). Resuming from it restarts the data stream at iteration 5000 (the sampler is deterministic in (SEED,
iteration)) with the optimizer, schedule, AMP scaler, EMA and every process's RNG state as they were, so the
final weights equal an uninterrupted run's. Work outside the training trajectory (starting a data-loader
iterator, evaluation) runs with the RNG state preserved, so it cannot shift the random draws of training.
"""
import contextlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional

import torch
from fvcore.common.config import CfgNode
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..checkpoint.checkpointer import Checkpointer, non_finite_tensors
from ..utils import comm
from .ema import ModelEMA
from .hooks import (EMAHook, EvalHook, HookBase, LRSchedulerHook, MetricsLogger, NonFiniteGuard, NonFiniteLossError,
                    PeriodicCheckpointer, TensorBoardWriter, TrainingCurves)
from .hooks.evaluation import EvalResults
from .metrics import MetricsWriter
from .optimizer import build_optimizer
from .rng import get_rng_state, preserved_rng_state, set_rng_state
from .scheduler import build_lr_scheduler
from .train_loop import TrainerBase

logger = logging.getLogger(__name__)

AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class StepResult:
    """What one iteration produced, for the hooks: losses averaged over processes (floats), their sum, the
    gradient norm before clipping, the seconds spent waiting for the batch, and whether the optimizer stepped
    (False when an fp16 overflow made the scaler skip it)."""

    losses: Dict[str, float]
    total_loss: float
    grad_norm: float
    data_time: float
    optimizer_stepped: bool = False


class Trainer(TrainerBase):
    """Trains ``model`` for ``max_iter`` iterations; see the module docstring for the loop.

    Args:
        model: returns a dict of scalar losses for a batch in training mode (not yet wrapped in DDP:
            the trainer wraps it when the world size is > 1).
        optimizer, scheduler: stepped once per iteration.
        data_loader_fn: ``start_iter -> iterable of this rank's batches`` from iteration ``start_iter`` on.
        max_iter: number of iterations.
        output_dir: checkpoints, metrics.json, curves; "" writes nothing.
        checkpoint_period: save ``model_<iter>.pth`` every this many iterations (0: only the final one).
        max_to_keep: keep only the newest this many periodic checkpoints (None: all).
        eval_fn: ``model -> {dataset: {"bbox": {...}}}``; None disables evaluation.
        eval_period: evaluate every this many iterations; 0: only at the end.
        log_period: iterations between log lines and metrics records.
        clip_max_norm: max total gradient norm; 0 disables clipping.
        amp_dtype: None (float32), torch.bfloat16 or torch.float16 (with a GradScaler).
        ema_decay: keep an EMA of the weights (used for evaluation) with this decay; None: no EMA.
        find_unused_parameters: passed to DDP (needed when some trainable parameter gets no gradient).
        class_names: the name of every label, saved in each checkpoint ("class_names") so that
            conversions and the demo name the classes.
        final_safetensors_config: when given (the config YAML), the final weights are also written as
            ``model_final.safetensors`` with this config and the class names in its metadata.
        writers: the hooks that turn the metrics records into other outputs, registered right after the
            evaluation; None: ``TensorBoardWriter()`` and ``TrainingCurves()``; ``()`` leaves them out.
        hooks: more hooks, called after the trainer's own (same as :meth:`register_hooks` before ``train``).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        data_loader_fn: Callable[[int], Iterable],
        *,
        max_iter: int,
        output_dir: str = "",
        checkpoint_period: int = 0,
        max_to_keep: Optional[int] = None,
        eval_fn: Optional[Callable[[nn.Module], EvalResults]] = None,
        eval_period: int = 0,
        log_period: int = 20,
        clip_max_norm: float = 0.0,
        amp_dtype: Optional[torch.dtype] = None,
        ema_decay: Optional[float] = None,
        find_unused_parameters: bool = False,
        class_names: Optional[List[str]] = None,
        final_safetensors_config: Optional[str] = None,
        writers: Optional[Iterable[HookBase]] = None,
        hooks: Iterable[HookBase] = (),
    ):
        super().__init__()
        if max_iter < 1:
            raise ValueError(f"SOLVER.MAX_ITER must be >= 1, got {max_iter}")
        if amp_dtype not in (None, torch.bfloat16, torch.float16):
            raise ValueError(f"amp_dtype must be None, torch.bfloat16 or torch.float16, got {amp_dtype}")
        self.module = model
        self.device = next(model.parameters()).device
        if comm.get_world_size() > 1:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=device_ids,
                                            find_unused_parameters=find_unused_parameters)
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.data_loader_fn = data_loader_fn
        self.max_iter = max_iter
        self.output_dir = output_dir
        self.clip_max_norm = clip_max_norm
        self.class_names = list(class_names) if class_names is not None else None
        self.amp_dtype = amp_dtype
        self.scaler = torch.amp.GradScaler(self.device.type) if amp_dtype == torch.float16 else None
        # after the DDP wrap, which gave every process rank 0's weights
        self.ema = ModelEMA(self.module, ema_decay) if ema_decay is not None else None

        checkpointables: Dict[str, Any] = {"optimizer": optimizer, "scheduler": scheduler}
        if self.scaler is not None:
            checkpointables["grad_scaler"] = self.scaler
        if self.ema is not None:
            checkpointables["ema"] = self.ema
        self.checkpointer = Checkpointer(self.module, output_dir, save_to_disk=comm.is_main_process(),
                                         max_to_keep=max_to_keep, **checkpointables)
        self.metrics = MetricsWriter(output_dir, enabled=comm.is_main_process())
        self.skipped_steps = 0
        self.step_result: Optional[StepResult] = None
        self.last_results: EvalResults = {}
        self.last_eval_iteration: Optional[int] = None
        self._data_iter: Optional[Iterator] = None

        # the order of these hooks is the order of their effects, which exact resume relies on
        self.register_hooks([
            LRSchedulerHook(),
            EMAHook() if self.ema is not None else None,
            NonFiniteGuard(),
            MetricsLogger(log_period),
            PeriodicCheckpointer(checkpoint_period, final_safetensors_config),
            EvalHook(eval_fn, eval_period) if eval_fn is not None else None,
        ])
        # after every hook that writes records, so each sees an iteration's records in that iteration
        self.register_hooks(writers if writers is not None else [TensorBoardWriter(), TrainingCurves()])
        self.register_hooks(hooks)

    @classmethod
    def from_config(cls, cfg: CfgNode, model: nn.Module) -> Dict[str, Any]:
        """Constructor arguments from SOLVER.*, TEST.EVAL_PERIOD, DATASETS.* and OUTPUT_DIR.

        The data loader is this process's share of DATASETS.TRAIN; evaluation covers DATASETS.TEST.
        """
        from ..data import build_train_loader  # the engine ties data in; the loop itself needs none
        from ..data.class_names import training_class_names
        from .evaluation import DatasetsEvaluation

        optimizer = build_optimizer(cfg, model)
        rank, world_size = comm.get_rank(), comm.get_world_size()
        amp = cfg.SOLVER.AMP
        if amp.ENABLED and amp.DTYPE not in AMP_DTYPES:
            raise ValueError(f"SOLVER.AMP.DTYPE must be one of {sorted(AMP_DTYPES)}, got {amp.DTYPE!r}")
        return dict(
            model=model,
            optimizer=optimizer,
            scheduler=build_lr_scheduler(cfg, optimizer),
            data_loader_fn=lambda start_iter: build_train_loader(cfg, rank, world_size, start_iter=start_iter),
            max_iter=cfg.SOLVER.MAX_ITER,
            output_dir=cfg.OUTPUT_DIR,
            checkpoint_period=cfg.SOLVER.CHECKPOINT_PERIOD,
            max_to_keep=cfg.SOLVER.MAX_TO_KEEP or None,
            eval_fn=DatasetsEvaluation(cfg) if len(cfg.DATASETS.TEST) else None,
            eval_period=cfg.TEST.EVAL_PERIOD,
            log_period=cfg.SOLVER.LOG_PERIOD,
            clip_max_norm=cfg.SOLVER.CLIP_MAX_NORM,
            amp_dtype=AMP_DTYPES[amp.DTYPE] if amp.ENABLED else None,
            ema_decay=cfg.SOLVER.EMA.DECAY if cfg.SOLVER.EMA.ENABLED else None,
            find_unused_parameters=cfg.SOLVER.DDP_FIND_UNUSED_PARAMETERS,
            class_names=training_class_names(cfg),
            final_safetensors_config=cfg.dump() if cfg.SOLVER.SAVE_SAFETENSORS else None,
        )

    # ------------------------------------------------------------------ resume
    def resume_or_load(self, resume: bool, weights: str = "") -> None:
        """``resume``: continue from OUTPUT_DIR/last_checkpoint if it exists; otherwise load only the model
        weights from ``weights`` (MODEL.WEIGHTS; "" keeps the initialisation) and start at iteration 0.

        Every process reads the checkpoint (with several machines OUTPUT_DIR must be shared).
        """
        if resume and self.checkpointer.has_checkpoint():
            path = self.checkpointer.get_checkpoint_file()
            extra = self.checkpointer.load(path)
            last = int(extra["iteration"])
            self.start_iter = last + 1
            self.skipped_steps = int(extra.get("skipped_steps", 0))
            self._restore_rng(extra.get("rng_states"), path)
            self.metrics.resume(last)
            logger.info("Resumed from %s: continuing at iteration %d", path, self.start_iter)
        else:
            if resume:
                logger.info("--resume: no checkpoint in '%s', starting from the beginning", self.output_dir)
            if weights:
                self.checkpointer.load(weights, checkpointables=[])
            self.start_iter = 0

    def _restore_rng(self, states: Optional[List[Dict[str, Any]]], path: str) -> None:
        world_size = comm.get_world_size()
        if states is None or len(states) != world_size:
            logger.warning(
                "%s holds RNG states of %s processes, this run has %d: random draws (dropout) will differ from "
                "an uninterrupted run", path, "no" if states is None else len(states), world_size)
            return
        set_rng_state(states[comm.get_rank()])

    def save_checkpoint(self, name: str, tag_last: bool = True, **extra: Any) -> None:
        """Save the full training state as ``<name>.pth`` (main process; all processes take part).

        Args:
            tag_last: point ``last_checkpoint`` (what ``--resume`` continues from) at it.
            extra: more entries of the file.

        Raises:
            NonFiniteLossError: the weights hold NaN/inf (checked on every process, nothing is written).
        """
        bad = list(non_finite_tensors(self.module.state_dict()))
        if bad:
            raise NonFiniteLossError(
                f"refusing to save checkpoint '{name}.pth' at iteration {self.iteration}: non-finite weights in "
                f"{', '.join(bad[:10])}; the previous checkpoint is left as it was"
            )
        rng_states = comm.all_gather(get_rng_state())
        names = {} if self.class_names is None else {"class_names": self.class_names}
        self.checkpointer.save(name, tag_last=tag_last, iteration=self.iteration, rng_states=rng_states,
                               skipped_steps=self.skipped_steps, **names, **extra)
        self.metrics.flush()

    # ------------------------------------------------------------------ loop
    def train(self) -> EvalResults:
        """Run iterations ``start_iter .. max_iter - 1`` with the hooks (model_final.pth, final evaluation).

        Returns:
            The final evaluation results ({dataset: {"bbox": {...}}}) on the main process.

        Raises:
            NonFiniteLossError: a loss or the gradient norm became NaN/inf (no checkpoint is written).
        """
        logger.info("Starting training from iteration %d of %d", self.start_iter, self.max_iter)
        self.model.train()
        try:
            if self.start_iter >= self.max_iter:
                logger.info("Training is already complete (iteration %d)", self.max_iter - 1)
            else:
                self._data_iter = self._new_data_iter(self.start_iter)
            super().train()
        finally:
            self._data_iter = None
            self.metrics.flush()
        return self.last_results

    def after_train(self) -> None:
        self._data_iter = None  # ends the loader's workers before the final checkpoint and evaluation
        super().after_train()

    def _new_data_iter(self, start_iter: int) -> Iterator:
        with preserved_rng_state():
            return iter(self.data_loader_fn(start_iter))

    def _next_batch(self) -> Any:
        try:
            return next(self._data_iter)
        except StopIteration:  # a finite loader: continue the stream at this iteration
            self._data_iter = self._new_data_iter(self.iteration)
            try:
                return next(self._data_iter)
            except StopIteration:
                raise RuntimeError(f"the training data loader yields no batch at iteration {self.iteration}") from None

    def run_step(self) -> None:
        """One training iteration (``self.iteration``); its outcome goes to ``self.step_result``."""
        start = time.perf_counter()
        batch = self._next_batch()
        data_time = time.perf_counter() - start

        autocast = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None \
            else contextlib.nullcontext()
        with autocast:
            loss_dict = self.model(batch)
        losses = sum(loss_dict.values())
        # averaged over processes, which also lets every process see a NaN of any other and stop with it
        reduced = comm.reduce_dict({name: value.detach().float() for name, value in loss_dict.items()})
        values = {name: value.item() for name, value in reduced.items()}

        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(losses).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            losses.backward()
        grad_norm = self._clip_gradients()
        self.step_result = StepResult(values, sum(values.values()), grad_norm, data_time)
        self.call_hooks("after_backward")
        self.step_result.optimizer_stepped = self._optimizer_step()

    def _clip_gradients(self) -> float:
        """Clip to ``clip_max_norm`` (when > 0) and return the total norm before clipping."""
        parameters = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not parameters:
            return 0.0
        max_norm = self.clip_max_norm if self.clip_max_norm > 0 else math.inf
        return float(torch.nn.utils.clip_grad_norm_(parameters, max_norm))

    def _optimizer_step(self) -> bool:
        """Step the optimizer (through the fp16 scaler when there is one); False when the scaler skipped it."""
        if self.scaler is None:
            self.optimizer.step()
            return True
        scale = self.scaler.get_scale()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        # a lowered scale means the scaler found inf/NaN gradients and skipped the step: normal in fp16
        stepped = self.scaler.get_scale() >= scale
        if not stepped:
            self.skipped_steps += 1
            logger.debug("Iteration %d: fp16 gradients overflowed, step skipped (scale %g)", self.iteration, scale)
        return stepped
