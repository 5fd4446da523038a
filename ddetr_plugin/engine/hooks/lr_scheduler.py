"""Stepping the learning-rate schedule once per iteration."""
import re
import warnings

from .base import HookBase


class LRSchedulerHook(HookBase):
    """Calls ``trainer.scheduler.step()`` after every iteration, before anything logs the lr."""

    def after_step(self) -> None:
        with warnings.catch_warnings():
            # a skipped fp16 step is normal, yet the scheduler warns about it when it is the first step
            warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()` before"))
            self.trainer.scheduler.step()
