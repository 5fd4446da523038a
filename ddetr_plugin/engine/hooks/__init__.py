"""Hooks of the training loop: each adds one behaviour at the loop's stages (see ``base.HookBase``).

The trainer registers, in this order: the lr schedule, the EMA update (with EMA on), the non-finite guard,
metrics records and log lines, periodic/final checkpoints, periodic/final evaluation (with an ``eval_fn``),
then the writers that follow those records (TensorBoard events, the training-curves PNG). User hooks
(``BestCheckpointer``, ``EarlyStop`` or their own) are appended after them.
"""
from .base import HookBase
from .best_checkpointer import BestCheckpointer
from .early_stop import EarlyStop
from .ema import EMAHook
from .eval_metric import MetricTracker
from .evaluation import EvalHook
from .lr_scheduler import LRSchedulerHook
from .metrics_logger import MetricsLogger
from .non_finite import NonFiniteGuard, NonFiniteLossError
from .periodic_checkpointer import PeriodicCheckpointer
from .tensorboard_writer import TensorBoardWriter
from .training_curves import TrainingCurves

__all__ = [
    "BestCheckpointer", "EMAHook", "EarlyStop", "EvalHook", "HookBase", "LRSchedulerHook", "MetricTracker",
    "MetricsLogger", "NonFiniteGuard", "NonFiniteLossError", "PeriodicCheckpointer", "TensorBoardWriter",
    "TrainingCurves",
]
