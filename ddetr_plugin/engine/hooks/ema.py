"""Updating the exponential moving average of the weights after each optimizer step."""
from .base import HookBase


class EMAHook(HookBase):
    """Moves ``trainer.ema`` towards the weights after every iteration whose optimizer step was taken.

    An fp16 step skipped by the gradient scaler changed no weight, so it leaves the average alone too.
    """

    def after_step(self) -> None:
        if self.trainer.step_result.optimizer_stepped:
            self.trainer.ema.update()
