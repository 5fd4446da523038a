"""TensorBoard scalars of every metrics.json record, in OUTPUT_DIR (main process, with tensorboard installed)."""
import logging
from typing import Any, Dict, Mapping, Optional

from ...utils import comm
from .base import HookBase

logger = logging.getLogger(__name__)


def scalar_tags(record: Mapping[str, Any]) -> Dict[str, float]:
    """The scalars of one record by tag: ``<dataset>/<key>`` for an evaluation record, ``<key>`` for training.

    ``iteration`` (the step), ``dataset`` and null values (NaN in metrics.json) are not scalars.
    """
    prefix = f"{record['dataset']}/" if "dataset" in record else ""
    return {prefix + key: value for key, value in record.items()
            if key not in ("iteration", "dataset") and isinstance(value, (int, float))}


class TensorBoardWriter(HookBase):
    """Writes each new record of ``trainer.metrics`` as TensorBoard scalars at its iteration, then flushes.

    Registered after the hooks that write records (``MetricsLogger``, ``EvalHook``), so every record reaches
    the events file in the iteration that wrote it and a crash loses none already in metrics.json. On resume,
    events of the interrupted run from the resumed iteration on are purged (TensorBoard hides them), so the
    curves read as one run. Without the ``tensorboard`` package it says so once and does nothing; it also does
    nothing on processes other than the main one or without an output dir.
    """

    def __init__(self) -> None:
        self._writer: Optional[Any] = None
        self._seen = 0

    def before_train(self) -> None:
        self._close()  # a previous run of this trainer that raised left its writer open
        trainer = self.trainer
        if not (comm.is_main_process() and trainer.output_dir):
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logger.info("tensorboard is not installed: no TensorBoard events (pip install tensorboard)")
            return
        # the kept records of a resumed run are in its earlier events files already
        self._seen = len(trainer.metrics.records)
        purge_step = trainer.start_iter if trainer.start_iter > 0 else None
        self._writer = SummaryWriter(log_dir=trainer.output_dir, purge_step=purge_step)

    def after_step(self) -> None:
        self._write_new_records()

    def after_train(self) -> None:
        self._write_new_records()
        self._close()

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _write_new_records(self) -> None:
        if self._writer is None:
            return
        records = self.trainer.metrics.records_since(self._seen)
        if not records:
            return
        self._seen += len(records)
        for record in records:
            for tag, value in scalar_tags(record).items():
                self._writer.add_scalar(tag, value, record["iteration"])
        self._writer.flush()
