"""Running a model over a data loader and feeding an evaluator."""
import datetime
import logging
import time
from contextlib import contextmanager
from typing import Dict, Iterable, Iterator

import torch
from torch import nn

from .evaluator import DatasetEvaluator

logger = logging.getLogger(__name__)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put the model in eval mode and restore its previous mode afterwards, even on error."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def inference_on_dataset(
    model: nn.Module, data_loader: Iterable, evaluator: DatasetEvaluator, log_period_s: float = 10.0
) -> Dict[str, Dict[str, float]]:
    """Run ``model`` on every batch of ``data_loader`` without gradients and return the evaluator's metrics.

    Each batch is what the model's forward takes (a list of per-image dicts) and the model returns one dict
    per image; both go to ``evaluator.process``. Progress with an ETA is logged every ``log_period_s``
    seconds. The model's training/eval mode is restored afterwards.

    Returns:
        ``evaluator.evaluate()``: metrics on the main process, ``{}`` on the others when distributed.
    """
    try:
        total = len(data_loader)  # type: ignore[arg-type]
    except TypeError:  # an iterable without a length: progress without an ETA
        total = None
    logger.info("Start inference on %s batches", total if total is not None else "an unknown number of")
    # The first iterations pay for lazy initialization (workers, kernels, caches); the rate leaves them out.
    num_warmup = min(5, total - 1) if total else 5
    evaluator.reset()

    num_images = 0
    start = time.perf_counter()
    last_log = start
    timed_start = start
    with _eval_mode(model), torch.no_grad():
        for index, inputs in enumerate(data_loader):
            if index == num_warmup:
                timed_start = time.perf_counter()
            outputs = model(inputs)
            evaluator.process(inputs, outputs)
            num_images += len(inputs)

            now = time.perf_counter()
            timed_iters = index + 1 - num_warmup
            if now - last_log >= log_period_s and timed_iters > 0:
                seconds_per_iter = (now - timed_start) / timed_iters
                eta = "" if total is None else (
                    f" ETA={datetime.timedelta(seconds=int(seconds_per_iter * (total - index - 1)))}")
                logger.info("Inference done %d/%s. %.4f s/iter.%s", index + 1, total or "?", seconds_per_iter, eta)
                last_log = now

    elapsed = time.perf_counter() - start
    logger.info("Inference done on %d images in %s (%.2f images/s on this process)", num_images,
                datetime.timedelta(seconds=int(elapsed)), num_images / max(elapsed, 1e-9))
    return evaluator.evaluate()
