"""Training records in metrics.json and the periodic log line (median losses, timing, lr, ETA, memory)."""
import datetime
import logging
import statistics
import time
from collections import deque
from typing import Any, Deque, Dict, Optional

import torch

from ..metrics import IterationTimer, current_memory_mb
from .base import HookBase

logger = logging.getLogger(__name__)

# loss terms shown in the log line (all terms go to metrics.json)
LOGGED_TERMS = ("loss_ce", "loss_bbox", "loss_giou")


class MetricsLogger(HookBase):
    """Every ``period`` iterations and at the last one: a record in ``trainer.metrics`` and a log line.

    Losses are medians over the last ``period`` iterations, times are means. A run stopped early by a
    hook gets the record of its last iteration too.
    """

    def __init__(self, period: int = 20):
        self.period = max(1, period)
        self._window: Dict[str, Deque[float]] = {}
        self._timer: Optional[IterationTimer] = None
        self._step_start = 0.0
        self._logged_at: Optional[int] = None

    def before_train(self) -> None:
        self._timer = IterationTimer(self.trainer.max_iter)

    def before_step(self) -> None:
        self._step_start = time.perf_counter()

    def after_step(self) -> None:
        trainer = self.trainer
        result = trainer.step_result
        iteration_time = time.perf_counter() - self._step_start
        scalars = dict(result.losses, total_loss=result.total_loss, grad_norm=result.grad_norm,
                       data_time=result.data_time, time=iteration_time)
        for name, value in scalars.items():
            self._window.setdefault(name, deque(maxlen=self.period)).append(value)
        self._timer.step(iteration_time)
        done = trainer.iteration + 1
        if done % self.period == 0 or done == trainer.max_iter:
            self._log()

    def after_train(self) -> None:
        # a stop request ends the run between log periods: its last iteration is still recorded
        if self._window and self._logged_at != self.trainer.iteration:
            self._log()

    def _log(self) -> None:
        trainer = self.trainer
        iteration = trainer.iteration
        medians = {name: statistics.median(window) for name, window in self._window.items()}
        lr = trainer.optimizer.param_groups[0]["lr"]
        eta = self._timer.eta_seconds(iteration)
        memory = current_memory_mb()
        record: Dict[str, Any] = {"iteration": iteration, **medians, "lr": lr, "eta_seconds": eta}
        record["time"] = statistics.mean(self._window["time"])
        record["data_time"] = statistics.mean(self._window["data_time"])
        if memory is not None:
            record["rss_mb"] = round(memory, 1)
        if trainer.device.type == "cuda":
            record["max_mem_mb"] = round(torch.cuda.max_memory_allocated(trainer.device) / 2**20, 1)
        if trainer.scaler is not None:
            record["skipped_steps"] = trainer.skipped_steps
            record["loss_scale"] = trainer.scaler.get_scale()
        trainer.metrics.write(record)
        trainer.metrics.flush()
        self._logged_at = iteration

        shown = "  ".join(f"{name}: {medians[name]:.4g}" for name in ("total_loss",) + LOGGED_TERMS if name in medians)
        memory_text = f"  max_mem: {record['max_mem_mb']:.0f}M" if "max_mem_mb" in record else (
            f"  rss: {memory:.0f}M" if memory is not None else "")
        logger.info(
            "eta: %s  iter: %d/%d  %s  time: %.4f  data_time: %.4f  lr: %.3g%s",
            datetime.timedelta(seconds=int(eta)), iteration + 1, trainer.max_iter, shown, record["time"],
            record["data_time"], lr, memory_text,
        )
