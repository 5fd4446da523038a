"""Logging setup: colored console lines and ``log.txt`` on the main process, warnings only elsewhere.

Library modules log through ``logging.getLogger(__name__)`` and never configure
handlers; an entry point (``tools/train_net.py``) calls :func:`setup_logger`
once per process. Handlers go on the ``ddetr_plugin`` logger (and on the other
names passed, e.g. ``fvcore`` or a script's own), so a host program's root
logger is left alone.
"""
import logging
import os
import sys
from typing import Iterable, Optional

from termcolor import colored

PACKAGE_LOGGER = "ddetr_plugin"
_FORMAT = "[%(asctime)s %(name)s]: %(message)s"
_DATE_FORMAT = "%m/%d %H:%M:%S"
_LEVEL_COLORS = {logging.WARNING: "yellow", logging.ERROR: "red", logging.CRITICAL: "red"}


class ColorfulFormatter(logging.Formatter):
    """Prefix in green; WARNING/ERROR/CRITICAL tagged in yellow/red so they stand out in a long log."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        message = super().formatMessage(record)
        prefix_end = message.find("]: ") + 1
        prefix, body = message[:prefix_end], message[prefix_end:]
        color = _LEVEL_COLORS.get(record.levelno)
        if color is not None:
            body = " " + colored(record.levelname, color, attrs=["bold"]) + body
        return colored(prefix, "green") + body


def setup_logger(
    output_dir: Optional[str] = None,
    rank: int = 0,
    color: bool = True,
    names: Iterable[str] = (PACKAGE_LOGGER, "fvcore"),
) -> logging.Logger:
    """Configure the loggers in ``names`` for this process and return the package logger.

    Args:
        output_dir: on the main process (rank 0), also write every line to ``output_dir/log.txt``
            (appended, so a resumed run continues the same file).
        rank: this process's rank. Rank 0 logs INFO to stdout (colored when ``color``); the others log
            WARNING and above to stderr, tagged with their rank, so a failure on any rank is visible.
        names: logger names to configure; calling again replaces the handlers this function added.
    """
    logger = logging.getLogger(PACKAGE_LOGGER)
    for name in names:
        _configure(logging.getLogger(name), output_dir, rank, color)
    return logger


def _configure(logger: logging.Logger, output_dir: Optional[str], rank: int, color: bool) -> None:
    for handler in [h for h in logger.handlers if getattr(h, "_ddetr_handler", False)]:
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.DEBUG)
    # our handlers print everything once; the root logger would print it again
    logger.propagate = False

    plain = logging.Formatter(_FORMAT, datefmt=_DATE_FORMAT)
    if rank == 0:
        console = logging.StreamHandler(sys.stdout)
        console.setLevel(logging.INFO)
        console.setFormatter(ColorfulFormatter(_FORMAT, datefmt=_DATE_FORMAT) if color else plain)
        _add(logger, console)
        if output_dir:
            os.makedirs(output_dir, exist_ok=True)
            file_handler = logging.FileHandler(os.path.join(output_dir, "log.txt"), mode="a")
            file_handler.setLevel(logging.DEBUG)
            file_handler.setFormatter(plain)
            _add(logger, file_handler)
    else:
        errors = logging.StreamHandler(sys.stderr)
        errors.setLevel(logging.WARNING)
        errors.setFormatter(logging.Formatter(f"[rank {rank}] " + _FORMAT, datefmt=_DATE_FORMAT))
        _add(logger, errors)


def _add(logger: logging.Logger, handler: logging.Handler) -> None:
    handler._ddetr_handler = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
