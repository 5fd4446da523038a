"""OUTPUT_DIR/metrics.json, TensorBoard events and the training-curves PNG (main process); the ETA timer.

metrics.json holds one JSON object per line: training records (``iteration``,
``total_loss``, each loss term, ``lr``, ``time``, ``data_time``, ``eta_seconds``,
memory) and evaluation records (``iteration``, ``dataset``, ``bbox/AP``,
``bbox/AP50``... in percent). Each flush rewrites the whole file to a temporary
file and renames it over metrics.json, so a crash never leaves a torn line and a
reader always sees a complete file. On resume the records after the resumed
checkpoint (from the interrupted run) are dropped, so the file reads as one run.

TensorBoard events are written when ``torch.utils.tensorboard`` imports (it needs
the ``tensorboard`` package); the PNG when matplotlib is installed. Each missing
extra is reported once, at start.
"""
import json
import logging
import math
import os
import statistics
import time
from collections import deque
from typing import Any, Deque, Dict, List, Mapping, Optional

from ..utils.file_io import atomic_write
from .curves import CURVES_FILE_NAME, Series, matplotlib_available, plot_training_curves

logger = logging.getLogger(__name__)

METRICS_FILE_NAME = "metrics.json"
EVAL_KEYS_PLOTTED = ("bbox/AP", "bbox/AP50")


def _json_value(value: Any) -> Any:
    """NaN/inf are not JSON: written as null (pycocotools' "no ground truth" APs are NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsWriter:
    """Collects metric records and writes them out on :meth:`flush`.

    Args:
        output_dir: where metrics.json, the PNG and the TensorBoard events go.
        enabled: False on processes other than the main one (everything becomes a no-op).
        plot_interval_s: redraw the PNG at most this often (drawing it is slow); evaluation records
            and :meth:`close` always redraw.
        tensorboard: write TensorBoard events when the package is available.
    """

    def __init__(self, output_dir: str, enabled: bool = True, plot_interval_s: float = 60.0, tensorboard: bool = True):
        self.enabled = enabled and bool(output_dir)
        self.path = os.path.join(output_dir, METRICS_FILE_NAME)
        self.plot_path = os.path.join(output_dir, CURVES_FILE_NAME)
        self.plot_interval_s = plot_interval_s
        self._lines: List[str] = []
        self._training: Series = {"total_loss": [], "lr": []}
        self._evaluation: Series = {key: [] for key in EVAL_KEYS_PLOTTED}
        self._dirty = False
        self._plot_due = False
        self._last_plot = time.monotonic()  # first drawn after plot_interval_s (or at an evaluation)
        self._tensorboard = None
        self._plot = False
        if not self.enabled:
            return
        os.makedirs(output_dir, exist_ok=True)
        self._plot = matplotlib_available()
        if not self._plot:
            logger.info("matplotlib is not installed: no %s (pip install matplotlib to get it)", CURVES_FILE_NAME)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                logger.info("tensorboard is not installed: no TensorBoard events (pip install tensorboard)")
            else:
                self._tensorboard = SummaryWriter(log_dir=output_dir)

    def resume(self, last_iteration: int) -> None:
        """Continue an existing metrics.json, dropping the records of iterations after ``last_iteration``."""
        if not self.enabled or not os.path.isfile(self.path):
            return
        kept = 0
        with open(self.path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    logger.warning("Skipping an unreadable line of %s", self.path)
                    continue
                if record.get("iteration", -1) <= last_iteration:
                    self._remember(record, line)
                    kept += 1
        self._dirty = True
        logger.info("Continuing %s from iteration %d (%d records kept)", self.path, last_iteration, kept)

    def write(self, record: Mapping[str, Any]) -> None:
        """Add one record (it must hold "iteration"); written out at the next :meth:`flush`."""
        if not self.enabled:
            return
        record = {key: _json_value(value) for key, value in record.items()}
        line = json.dumps(record, sort_keys=False)
        self._remember(record, line)
        self._dirty = True
        if self._tensorboard is not None:
            iteration = record["iteration"]
            prefix = f"{record['dataset']}/" if "dataset" in record else ""
            for key, value in record.items():
                if key not in ("iteration", "dataset") and isinstance(value, (int, float)) and value is not None:
                    self._tensorboard.add_scalar(prefix + key, value, iteration)

    def _remember(self, record: Mapping[str, Any], line: str) -> None:
        self._lines.append(line)
        iteration = record.get("iteration")
        if iteration is None:
            return
        for key in self._training:
            if record.get(key) is not None:
                self._training[key].append((iteration, record[key]))
        for key in self._evaluation:
            if record.get(key) is not None:
                self._evaluation[key].append((iteration, record[key]))
                self._plot_due = True

    def flush(self, force_plot: bool = False) -> None:
        """Rewrite metrics.json atomically (if anything changed) and redraw the PNG when due."""
        if not self.enabled:
            return
        if self._dirty:
            text = "".join(line + "\n" for line in self._lines)
            atomic_write(self.path, lambda f: f.write(text), binary=False)
            self._dirty = False
        if self._tensorboard is not None:
            self._tensorboard.flush()
        now = time.monotonic()
        if self._plot and (force_plot or self._plot_due or now - self._last_plot >= self.plot_interval_s):
            plot_training_curves(self.plot_path, self._training, self._evaluation)
            self._last_plot = now
            self._plot_due = False

    def close(self) -> None:
        self.flush(force_plot=True)
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None

    @property
    def records(self) -> List[Dict[str, Any]]:
        """Every record so far, parsed (for tests and callers that want the history)."""
        return [json.loads(line) for line in self._lines]


def current_memory_mb() -> Optional[float]:
    """Resident memory of this process in MiB (Linux /proc), None where unknown."""
    try:
        with open("/proc/self/statm") as f:
            resident_pages = int(f.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


class IterationTimer:
    """Seconds per iteration over recent iterations, for the ETA.

    The first two iterations of a run pay for lazy initialisation (loader workers, kernels) and are left
    out once later ones exist.
    """

    def __init__(self, max_iter: int, window: int = 100, warmup: int = 2):
        self.max_iter = max_iter
        self.warmup = warmup
        self._warmup_durations: List[float] = []
        self._durations: Deque[float] = deque(maxlen=window)

    def step(self, seconds: float) -> None:
        if len(self._warmup_durations) < self.warmup:
            self._warmup_durations.append(seconds)
        else:
            self._durations.append(seconds)

    def eta_seconds(self, iteration: int) -> float:
        durations = self._durations or self._warmup_durations or [0.0]
        return statistics.mean(durations) * (self.max_iter - iteration - 1)
