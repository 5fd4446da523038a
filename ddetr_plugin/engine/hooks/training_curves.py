"""OUTPUT_DIR/training_curves.png redrawn from the metrics.json records (main process, with matplotlib)."""
import logging
import os
import time
from typing import Optional, Tuple

from ...utils import comm
from ..curves import CURVES_FILE_NAME, CurveSeries, matplotlib_available, plot_training_curves
from .base import HookBase

logger = logging.getLogger(__name__)


class TrainingCurves(HookBase):
    """Redraws the PNG of the loss, learning rate and evaluation AP from the records of ``trainer.metrics``.

    Drawing is slow, so the PNG is redrawn after an iteration that brought new records at most every
    ``plot_interval_s`` seconds, and always right after an evaluation record and at the end of training.
    After a crash it may therefore be up to ``plot_interval_s`` older than metrics.json. A resumed run draws
    the kept records of the interrupted run too. Without matplotlib it says so once and does nothing; it also
    does nothing on processes other than the main one or without an output dir.

    Args:
        plot_interval_s: the shortest time between two redraws, evaluations and the end aside.
    """

    def __init__(self, plot_interval_s: float = 60.0):
        self.plot_interval_s = plot_interval_s
        self._series: Optional[CurveSeries] = None
        self._path = ""
        self._seen = 0
        self._last_plot = 0.0

    def before_train(self) -> None:
        trainer = self.trainer
        if not (comm.is_main_process() and trainer.output_dir):
            return
        if not matplotlib_available():
            logger.info("matplotlib is not installed: no %s (pip install matplotlib to get it)", CURVES_FILE_NAME)
            return
        self._path = os.path.join(trainer.output_dir, CURVES_FILE_NAME)
        self._series = CurveSeries()
        self._seen = 0
        self._take_new_records()
        self._last_plot = time.monotonic()  # first drawn after plot_interval_s (or at an evaluation)

    def after_step(self) -> None:
        if self._series is None:
            return
        new_records, evaluated = self._take_new_records()
        if new_records and (evaluated or time.monotonic() - self._last_plot >= self.plot_interval_s):
            self._draw()

    def after_train(self) -> None:
        if self._series is None:
            return
        self._take_new_records()
        self._draw()

    def _take_new_records(self) -> Tuple[bool, bool]:
        """Add the records written since the last call; (whether there were any, whether one was an evaluation)."""
        records = self.trainer.metrics.records_since(self._seen)
        self._seen += len(records)
        return bool(records), self._series.add(records)

    def _draw(self) -> None:
        plot_training_curves(self._path, self._series.training, self._series.evaluation)
        self._last_plot = time.monotonic()
