"""Evaluation of detections: the COCO evaluator and the inference loop that feeds it.

Knows no model: it sees per-image dicts of boxes, scores and labels.
"""
from .coco_evaluation import COCOEvaluator
from .evaluator import DatasetEvaluator
from .formatting import flatten_results, format_table, print_csv_format
from .inference import inference_on_dataset

__all__ = [
    "COCOEvaluator",
    "DatasetEvaluator",
    "flatten_results",
    "format_table",
    "inference_on_dataset",
    "print_csv_format",
]
