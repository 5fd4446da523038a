"""Stopping training when an evaluation metric has not improved for a number of evaluations."""
import logging
from typing import Optional

from .base import HookBase
from .eval_metric import MetricTracker

logger = logging.getLogger(__name__)


class EarlyStop(HookBase):
    """Requests a stop after ``patience`` evaluations in a row without an improvement of ``metric``.

    The stop takes effect after the current iteration: ``model_final.pth`` is then saved at that iteration and
    metrics.json flushed, as at a normal end (the evaluation just made is not repeated). Register it after the
    trainer's own hooks so it sees each evaluation. Its count starts afresh in a resumed run.

    Args:
        metric: "<task>/<name>" as in metrics.json, e.g. "bbox/AP".
        patience: evaluations without improvement that stop training (>= 1).
        mode: "max" or "min".
        min_delta: an improvement must beat the best by more than this.
        dataset: the dataset whose result counts; None: the first one evaluated.
    """

    def __init__(self, metric: str = "bbox/AP", patience: int = 3, mode: str = "max", min_delta: float = 0.0,
                 dataset: Optional[str] = None):
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.tracker = MetricTracker(metric, mode, dataset, min_delta)
        self.patience = patience
        self.evaluations_without_improvement = 0

    def after_step(self) -> None:
        value = self.tracker.new_value(self.trainer)
        if value is None:
            return
        if self.tracker.update(value, self.trainer.iteration):
            self.evaluations_without_improvement = 0
            return
        self.evaluations_without_improvement += 1
        if self.evaluations_without_improvement >= self.patience:
            best = "no finite value" if self.tracker.best is None else \
                f"{self.tracker.best:.4g} (iteration {self.tracker.best_iteration})"
            self.trainer.request_stop(
                f"{self.tracker.metric} has not improved on {best} for {self.patience} evaluations")
