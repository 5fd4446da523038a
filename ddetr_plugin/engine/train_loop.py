"""The bare training loop: run iterations and call every hook at its stage, in registration order.

Stages per run::

    before_train
    for each iteration:  before_step -> run_step (calls after_backward) -> after_step
    after_train          (after the last iteration or a stop request; not after an exception)

Everything beyond running iterations (checkpoints, evaluation, metrics, schedules) is a hook
(``engine/hooks/``), so a user adds behaviour from Python with :meth:`TrainerBase.register_hooks`.
"""
import logging
import weakref
from typing import Iterable, List, Optional, Tuple

from .hooks.base import HookBase

logger = logging.getLogger(__name__)


class TrainerBase:
    """Runs ``run_step`` for iterations ``start_iter .. max_iter - 1`` and calls the hooks around it.

    Attributes:
        iteration: the current iteration inside a step; after the loop, the last one run
            (``start_iter - 1`` when none ran).
        start_iter, max_iter: the range of the loop.
    """

    def __init__(self) -> None:
        self._hooks: List[HookBase] = []
        self.iteration = -1
        self.start_iter = 0
        self.max_iter = 0
        self._stop_reason: Optional[str] = None

    @property
    def hooks(self) -> Tuple[HookBase, ...]:
        """The registered hooks, in the order they are called."""
        return tuple(self._hooks)

    def register_hooks(self, hooks: Iterable[Optional[HookBase]]) -> None:
        """Append ``hooks`` (None entries are skipped); each is called after those registered before it."""
        for hook in hooks:
            if hook is None:
                continue
            if not isinstance(hook, HookBase):
                raise TypeError(f"register_hooks expects HookBase instances, got {type(hook).__name__}")
            # a weak reference: the trainer owns its hooks, not the other way round
            hook.trainer = weakref.proxy(self)
            self._hooks.append(hook)

    def request_stop(self, reason: str) -> None:
        """End training after the current iteration's ``after_step``; ``after_train`` still runs."""
        self._stop_reason = reason

    def train(self) -> None:
        """Run the loop over ``start_iter .. max_iter - 1``; exceptions of a step or a hook propagate."""
        self._stop_reason = None
        self.iteration = self.start_iter - 1
        self.call_hooks("before_train")
        for self.iteration in range(self.start_iter, self.max_iter):
            self.call_hooks("before_step")
            self.run_step()
            self.call_hooks("after_step")
            if self._stop_reason is not None:
                logger.info("Stopping after iteration %d of %d: %s", self.iteration, self.max_iter,
                            self._stop_reason)
                break
        self.after_train()

    def run_step(self) -> None:
        """One iteration; subclasses implement it and call ``call_hooks("after_backward")`` before the optimizer
        step."""
        raise NotImplementedError

    def after_train(self) -> None:
        """Call the hooks' ``after_train``; subclasses extend it to release what the iterations held."""
        self.call_hooks("after_train")

    def call_hooks(self, stage: str) -> None:
        """Call ``stage`` ("before_train", "before_step", "after_backward", ...) of every hook, in order."""
        for hook in self._hooks:
            getattr(hook, stage)()
