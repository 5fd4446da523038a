"""Keeping the checkpoint of the best evaluation so far as ``model_best.pth``."""
import logging
from typing import Optional

from .base import HookBase
from .eval_metric import MetricTracker

logger = logging.getLogger(__name__)


class BestCheckpointer(HookBase):
    """After each evaluation, saves the full training state as ``<file_name>.pth`` when ``metric`` improved.

    Register it after the trainer's own hooks (``Trainer.register_hooks`` appends) so it sees each
    evaluation, the final one included. ``last_checkpoint`` keeps naming the newest periodic checkpoint,
    so ``--resume`` is not affected; the file holds "best_metric" with the name and value.

    Args:
        metric: "<task>/<name>" as in metrics.json, e.g. "bbox/AP".
        mode: "max" or "min".
        dataset: the dataset whose result counts; None: the first one evaluated.
        file_name: the checkpoint's name without ".pth".
    """

    def __init__(self, metric: str = "bbox/AP", mode: str = "max", dataset: Optional[str] = None,
                 file_name: str = "model_best"):
        self.tracker = MetricTracker(metric, mode, dataset)
        self.file_name = file_name

    def after_step(self) -> None:
        self._check()

    def after_train(self) -> None:
        self._check()

    def _check(self) -> None:
        value = self.tracker.new_value(self.trainer)
        iteration = self.trainer.iteration
        if value is None or not self.tracker.update(value, iteration):
            return
        logger.info("New best %s = %.4g at iteration %d: saving %s.pth", self.tracker.metric, value, iteration,
                    self.file_name)
        self.trainer.save_checkpoint(self.file_name, tag_last=False,
                                     best_metric={"name": self.tracker.metric, "value": value})
