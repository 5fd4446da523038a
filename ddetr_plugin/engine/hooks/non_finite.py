"""Stopping training when a loss or the gradient norm is NaN or infinite, before the weights change."""
import math
from typing import Dict

from ...utils import comm
from .base import HookBase


class NonFiniteLossError(FloatingPointError):
    """Training diverged: a loss or the gradient norm is NaN or infinite."""


def format_terms(values: Dict[str, float]) -> str:
    return ", ".join(f"{name}={value:.6g}" for name, value in sorted(values.items()))


class NonFiniteGuard(HookBase):
    """Raises :class:`NonFiniteLossError` before the optimizer step of a diverged iteration.

    The losses are averaged over processes before the check, so every process sees a NaN of any other and
    stops at the same iteration. With an fp16 gradient scaler, non-finite gradients are the scaler's to
    handle (it skips the step and lowers the scale), so only the losses are checked.
    """

    def after_backward(self) -> None:
        trainer = self.trainer
        result = trainer.step_result
        if not math.isfinite(result.total_loss):
            raise NonFiniteLossError(self._loss_message(result.losses))
        if trainer.scaler is None and not math.isfinite(result.grad_norm):
            raise NonFiniteLossError(
                f"non-finite gradient norm ({result.grad_norm}) at iteration {trainer.iteration} although the "
                f"losses are finite ({format_terms(result.losses)}); the optimizer step was not taken and no "
                f"checkpoint was written"
            )

    def _loss_message(self, values: Dict[str, float]) -> str:
        trainer = self.trainer
        bad = [name for name, value in values.items() if not math.isfinite(value)]
        where = f" (averaged over {comm.get_world_size()} processes)" if comm.get_world_size() > 1 else ""
        return (
            f"non-finite loss at iteration {trainer.iteration}: {', '.join(bad)} not finite{where}. All terms: "
            f"{format_terms(values)}. Training stopped before the optimizer step; no checkpoint was written for "
            f"this state (the last good one is named in {trainer.output_dir or 'OUTPUT_DIR'}/last_checkpoint). "
            f"Try a lower SOLVER.BASE_LR, gradient clipping (SOLVER.CLIP_MAX_NORM) or check the data."
        )
