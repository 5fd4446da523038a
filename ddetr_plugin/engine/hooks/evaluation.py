"""Periodic and final evaluation, recorded in metrics.json, run without touching the training RNG."""
from typing import Callable, Dict

from torch import nn

from ...utils import comm
from ..rng import preserved_rng_state
from .base import HookBase

EvalResults = Dict[str, Dict[str, Dict[str, float]]]  # {dataset: {"bbox": {"AP": ...}}}


class EvalHook(HookBase):
    """Runs ``eval_fn`` every ``period`` iterations and after training (on the EMA weights when EMA is on).

    The results become ``trainer.last_results`` (with ``trainer.last_eval_iteration``) and one metrics.json
    record per dataset. The random generators are restored afterwards, so evaluating cannot shift the draws
    of training (exact resume). After training, an evaluation already made at the last iteration (a run
    stopped right after one) is not repeated.

    Args:
        eval_fn: ``model -> {dataset: {"bbox": {...}}}`` (results on the main process, {} elsewhere).
        period: evaluate after every this many iterations; 0: only after training.
    """

    def __init__(self, eval_fn: Callable[[nn.Module], EvalResults], period: int = 0):
        self.eval_fn = eval_fn
        self.period = period

    def after_step(self) -> None:
        done = self.trainer.iteration + 1
        # the last iteration's evaluation comes in after_train, after model_final is saved
        if self.period > 0 and done % self.period == 0 and done != self.trainer.max_iter:
            self._evaluate()

    def after_train(self) -> None:
        if self.trainer.last_eval_iteration != self.trainer.iteration:
            self._evaluate()

    def _evaluate(self) -> None:
        trainer = self.trainer
        with preserved_rng_state():
            if trainer.ema is not None:
                with trainer.ema.applied() as model:
                    results = self.eval_fn(model)
            else:
                results = self.eval_fn(trainer.module)
        iteration = trainer.iteration
        for dataset, tasks in results.items():
            flat = {f"{task}/{name}": value for task, metrics in tasks.items() for name, value in metrics.items()}
            if flat:
                trainer.metrics.write({"iteration": iteration, "dataset": dataset, **flat})
        trainer.metrics.flush()
        comm.synchronize()
        trainer.last_results = results
        trainer.last_eval_iteration = iteration
