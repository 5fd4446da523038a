"""Following one evaluation metric across evaluations: its newest value and whether it improved."""
import math
from typing import Any, Optional

from ...utils import comm

MODES = ("max", "min")


class MetricTracker:
    """The best value so far of ``metric`` (e.g. "bbox/AP") on ``dataset`` of the trainer's evaluations.

    Args:
        metric: "<task>/<name>" as in metrics.json, e.g. "bbox/AP" or "bbox/AP50".
        mode: "max" (higher is better) or "min".
        dataset: the dataset whose result counts; None: the first dataset evaluated.
        min_delta: how much better than the best a value must be to count as an improvement.
    """

    def __init__(self, metric: str, mode: str = "max", dataset: Optional[str] = None, min_delta: float = 0.0):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if metric.count("/") != 1:
            raise ValueError(f"metric must read '<task>/<name>' such as 'bbox/AP', got {metric!r}")
        self.metric = metric
        self.mode = mode
        self.dataset = dataset
        self.min_delta = min_delta
        self.best: Optional[float] = None
        self.best_iteration: Optional[int] = None
        self._seen_iteration: Optional[int] = None

    def new_value(self, trainer: Any) -> Optional[float]:
        """The metric of an evaluation this tracker has not seen yet, the same on every process; else None.

        Raises:
            KeyError: the evaluation has no such dataset or metric (the message lists what it has).
        """
        iteration = trainer.last_eval_iteration
        if iteration is None or iteration == self._seen_iteration:
            return None
        self._seen_iteration = iteration
        value = self._lookup(trainer.last_results) if comm.is_main_process() else None
        # results exist on the main process only: its value decides for all
        return comm.all_gather(value)[0]

    def _lookup(self, results: Any) -> float:
        if not results:
            raise KeyError(f"no evaluation results to read {self.metric!r} from (is DATASETS.TEST empty?)")
        dataset = self.dataset if self.dataset is not None else next(iter(results))
        if dataset not in results:
            raise KeyError(f"dataset {dataset!r} was not evaluated; evaluated: {sorted(results)}")
        task, name = self.metric.split("/")
        metrics = results[dataset].get(task, {})
        if name not in metrics:
            found = sorted(f"{t}/{n}" for t, values in results[dataset].items() for n in values)
            raise KeyError(f"metric {self.metric!r} not in the evaluation of {dataset!r}; it has {found}")
        return float(metrics[name])

    def update(self, value: float, iteration: int) -> bool:
        """Record ``value``; True when it beats the best so far by more than ``min_delta`` (NaN never does)."""
        if math.isnan(value):
            return False
        improved = self.best is None or (
            value > self.best + self.min_delta if self.mode == "max" else value < self.best - self.min_delta)
        if improved:
            self.best, self.best_iteration = value, iteration
        return improved
