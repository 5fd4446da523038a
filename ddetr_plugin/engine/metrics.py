"""OUTPUT_DIR/metrics.json (main process) and the ETA timer.

metrics.json holds one JSON object per line: training records (``iteration``,
``total_loss``, each loss term, ``lr``, ``time``, ``data_time``, ``eta_seconds``,
memory) and evaluation records (``iteration``, ``dataset``, ``bbox/AP``,
``bbox/AP50``... in percent). Each flush rewrites the whole file to a temporary
file and renames it over metrics.json, so a crash never leaves a torn line and a
reader always sees a complete file. On resume the records after the resumed
checkpoint (from the interrupted run) are dropped, so the file reads as one run.

Other outputs follow the records through hooks that read :attr:`MetricsWriter.records`
(``hooks.TensorBoardWriter``, ``hooks.TrainingCurves``).
"""
import json
import logging
import math
import os
import statistics
from collections import deque
from typing import Any, Deque, Dict, List, Mapping, Optional

from ..utils.file_io import atomic_write

logger = logging.getLogger(__name__)

METRICS_FILE_NAME = "metrics.json"


def _json_value(value: Any) -> Any:
    """NaN/inf are not JSON: written as null (pycocotools' "no ground truth" APs are NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsWriter:
    """Collects metric records and writes them out on :meth:`flush`.

    Args:
        output_dir: where metrics.json goes.
        enabled: False on processes other than the main one (everything becomes a no-op).
    """

    def __init__(self, output_dir: str, enabled: bool = True):
        self.enabled = enabled and bool(output_dir)
        self.path = os.path.join(output_dir, METRICS_FILE_NAME)
        self._lines: List[str] = []
        # parsed back from the lines, so readers see exactly what metrics.json holds (NaN as None)
        self._records: List[Dict[str, Any]] = []
        self._dirty = False
        if self.enabled:
            os.makedirs(output_dir, exist_ok=True)

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
                    self._lines.append(line)
                    self._records.append(record)
                    kept += 1
        self._dirty = True
        logger.info("Continuing %s from iteration %d (%d records kept)", self.path, last_iteration, kept)

    def write(self, record: Mapping[str, Any]) -> None:
        """Add one record (it must hold "iteration"); written out at the next :meth:`flush`."""
        if not self.enabled:
            return
        line = json.dumps({key: _json_value(value) for key, value in record.items()}, sort_keys=False)
        self._lines.append(line)
        self._records.append(json.loads(line))
        self._dirty = True

    def flush(self) -> None:
        """Rewrite metrics.json atomically, if anything changed since the last flush."""
        if not self.enabled or not self._dirty:
            return
        text = "".join(line + "\n" for line in self._lines)
        atomic_write(self.path, lambda f: f.write(text), binary=False)
        self._dirty = False

    @property
    def records(self) -> List[Dict[str, Any]]:
        """Every record so far (a resumed run's kept ones first), as metrics.json holds them."""
        return self.records_since(0)

    def records_since(self, start: int) -> List[Dict[str, Any]]:
        """The records from the ``start``-th on (copies), for readers that follow the file as it grows."""
        return [dict(record) for record in self._records[start:]]


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
