"""The hook interface: code run by the training loop at fixed stages of every run and iteration."""
from typing import Any


class HookBase:
    """Subclass and override the stages you need; each does nothing by default.

    ``self.trainer`` is set by ``Trainer.register_hooks``; through it a hook reads the state of the run:
    ``trainer.iteration`` (the current iteration), ``trainer.max_iter``, ``trainer.model`` (possibly DDP-wrapped)
    and ``trainer.module`` (the bare model), ``trainer.optimizer``, ``trainer.step_result`` (this iteration's
    losses, gradient norm and whether the optimizer stepped), ``trainer.metrics`` (the metrics.json writer),
    ``trainer.last_results`` / ``trainer.last_eval_iteration`` (the newest evaluation).

    Every process calls every hook; a hook whose decision depends on main-process-only data (evaluation
    results) must share it so all processes act alike. An exception raised by a hook stops training.
    """

    trainer: Any = None

    def before_train(self) -> None:
        """Once, before the first iteration of this run (also when there is none left to run)."""

    def before_step(self) -> None:
        """Before each iteration's data loading and forward pass."""

    def after_backward(self) -> None:
        """After the backward pass and gradient clipping, before the optimizer step; raising skips the step."""

    def after_step(self) -> None:
        """After each iteration's optimizer step."""

    def after_train(self) -> None:
        """Once, after the last iteration or a ``trainer.request_stop``; not called when an iteration raised."""
