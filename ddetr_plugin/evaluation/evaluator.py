"""The interface every dataset evaluator follows."""
from typing import Any, Dict, List


class DatasetEvaluator:
    """Accumulates a model's outputs over a dataset and computes metrics at the end.

    ``inference_on_dataset`` calls ``reset()`` once, ``process()`` once per batch
    and ``evaluate()`` at the end; in distributed runs every process calls all
    three, and ``evaluate()`` returns the metrics on the main process only.
    """

    def reset(self) -> None:
        """Forget everything processed so far, before a new pass over the dataset."""

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        """Record one batch: the model's inputs and its outputs, one dict per image each."""
        raise NotImplementedError(f"{type(self).__name__} must implement process()")

    def evaluate(self) -> Dict[str, Dict[str, float]]:
        """Metrics as ``{task: {metric: value}}``; ``{}`` on processes other than the main one."""
        raise NotImplementedError(f"{type(self).__name__} must implement evaluate()")
