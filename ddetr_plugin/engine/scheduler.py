"""Per-iteration learning-rate schedule: multi-step decay with an optional linear warm-up.

The schedule is a ``LambdaLR`` whose factor at iteration ``t`` is

    warmup(t) * gamma ** (number of steps <= t)
    warmup(t) = warmup_factor + (1 - warmup_factor) * t / warmup_iters   for t < warmup_iters, else 1

so iteration 0 runs at ``base_lr * warmup_factor`` and the first step at ``s``
applies from iteration ``s`` on. The trainer calls ``scheduler.step()`` once
after every iteration.
"""
import bisect
import logging
from typing import Callable, Sequence

import torch

logger = logging.getLogger(__name__)


def multistep_warmup_factor(
    steps: Sequence[int], gamma: float = 0.1, warmup_iters: int = 0, warmup_factor: float = 0.001
) -> Callable[[int], float]:
    """The lr multiplier as a function of the iteration (see the module docstring).

    Raises:
        ValueError: ``steps`` not strictly increasing, or a negative ``warmup_iters``.
    """
    steps = [int(step) for step in steps]
    if any(later <= earlier for earlier, later in zip(steps, steps[1:])):
        raise ValueError(f"SOLVER.STEPS must be strictly increasing iterations, got {steps}")
    if warmup_iters < 0:
        raise ValueError(f"SOLVER.WARMUP_ITERS must be >= 0, got {warmup_iters}")

    # A plain function (not a callable object) so LambdaLR's state_dict does not store it: on resume
    # the schedule comes from the config and only the iteration count from the checkpoint.
    def factor(iteration: int) -> float:
        decay = gamma ** bisect.bisect_right(steps, iteration)
        if iteration >= warmup_iters:
            return decay
        alpha = iteration / warmup_iters
        return decay * (warmup_factor * (1 - alpha) + alpha)

    return factor


def build_lr_scheduler(cfg, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule of SOLVER.STEPS, GAMMA, WARMUP_ITERS and WARMUP_FACTOR for every param group."""
    steps = list(cfg.SOLVER.STEPS)
    late = [step for step in steps if step >= cfg.SOLVER.MAX_ITER]
    if late:
        logger.warning("SOLVER.STEPS %s are at or after SOLVER.MAX_ITER %d and never apply", late, cfg.SOLVER.MAX_ITER)
    factor = multistep_warmup_factor(steps, cfg.SOLVER.GAMMA, cfg.SOLVER.WARMUP_ITERS, cfg.SOLVER.WARMUP_FACTOR)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
