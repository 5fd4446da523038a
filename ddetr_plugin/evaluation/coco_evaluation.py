"""COCO box AP with pycocotools, gathering predictions from every process."""
import contextlib
import io
import json
import logging
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.ops import box_convert

from ..utils import comm
from ..utils.file_io import atomic_write
from .evaluator import DatasetEvaluator
from .formatting import format_per_class_table, format_table

logger = logging.getLogger(__name__)

RESULTS_FILE_NAME = "coco_instances_results.json"
# The first six entries of COCOeval.stats, in order.
SUMMARY_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _quietly(fn, *args) -> Tuple[Any, str]:
    """Call ``fn(*args)`` with pycocotools' prints captured; returns (result, printed text)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = fn(*args)
    return result, printed.getvalue()


def _to_percent(value: float) -> float:
    """pycocotools fraction -> percent; its -1 ("no ground truth to score against") -> NaN."""
    return float(value) * 100.0 if value >= 0 else math.nan


def _python_scalar(value: Any) -> Any:
    """A tensor or NumPy scalar id as a plain Python value, so it pickles small and dumps to JSON."""
    return value.item() if hasattr(value, "item") else value


class COCOEvaluator(DatasetEvaluator):
    """Box AP of detections against a COCO-format ground truth, as pycocotools computes it.

    Args:
        coco_json_file: path of the ground-truth COCO JSON, or an already loaded pycocotools ``COCO``.
            A path is loaded on first ``evaluate()``, by the main process only.
        contiguous_to_category_id: model label -> dataset ``category_id``. None: label i is the i-th
            ground-truth category in increasing id order.
        class_names: name of each model label, for the per-class table. None: the ground truth's
            category names.
        output_dir: where the main process writes ``coco_instances_results.json``; None: nowhere.
        distributed: gather the predictions of every process to rank 0 before evaluating. False:
            each process evaluates only what it processed itself.
        drop_unmapped_labels: leave out (with a warning that counts them) detections whose label has no
            category id, e.g. the classes of a model with more classes than the dataset, as pycocotools
            ignores categories its ground truth lacks. False: such a label is an error.
    """

    def __init__(
        self,
        coco_json_file: Union[str, os.PathLike, COCO],
        contiguous_to_category_id: Optional[Mapping[int, int]] = None,
        class_names: Optional[Sequence[str]] = None,
        output_dir: Optional[str] = None,
        distributed: bool = True,
        drop_unmapped_labels: bool = False,
    ) -> None:
        if isinstance(coco_json_file, COCO):
            self._coco_gt: Optional[COCO] = coco_json_file
            self._json_file = "<COCO object>"
        else:
            self._json_file = os.fspath(coco_json_file)
            if not os.path.isfile(self._json_file):
                raise FileNotFoundError(f"COCOEvaluator: ground-truth JSON '{self._json_file}' does not exist")
            self._coco_gt = None
        self._contiguous_to_category_id = (
            {int(k): int(v) for k, v in contiguous_to_category_id.items()}
            if contiguous_to_category_id is not None else None
        )
        self._class_names = list(class_names) if class_names is not None else None
        if self._contiguous_to_category_id is not None:
            self._check_class_names(self._contiguous_to_category_id)
        self._output_dir = output_dir
        self._distributed = distributed
        self._drop_unmapped_labels = drop_unmapped_labels
        self._predictions: List[Dict[str, Any]] = []

    @property
    def coco_gt(self) -> COCO:
        """The ground truth, loaded on first use."""
        if self._coco_gt is None:
            self._coco_gt, _ = _quietly(COCO, self._json_file)
            logger.info("Loaded ground truth '%s': %d images, %d annotations, %d categories", self._json_file,
                        len(self._coco_gt.imgs), len(self._coco_gt.anns), len(self._coco_gt.cats))
        return self._coco_gt

    def reset(self) -> None:
        self._predictions = []

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        """Record one batch.

        Args:
            inputs: one dict per image with "image_id" (the ground truth's image id).
            outputs: one dict per image with "boxes" (K, 4) xyxy in original-image pixels,
                "scores" (K,) and "labels" (K,) model labels (see contiguous_to_category_id).
        """
        if len(inputs) != len(outputs):
            raise ValueError(f"COCOEvaluator.process: {len(inputs)} inputs but {len(outputs)} outputs")
        for inp, out in zip(inputs, outputs):
            if "image_id" not in inp:
                raise KeyError(f"COCOEvaluator.process: each input needs 'image_id', got keys {sorted(inp)}")
            # float64 before converting so xyxy -> xywh adds no rounding to float32 boxes.
            boxes = torch.as_tensor(out["boxes"]).detach().to("cpu", torch.float64).reshape(-1, 4)
            self._predictions.append({
                "image_id": _python_scalar(inp["image_id"]),
                "boxes_xywh": box_convert(boxes, "xyxy", "xywh").numpy(),
                "scores": torch.as_tensor(out["scores"]).detach().to("cpu", torch.float64).reshape(-1).numpy(),
                "labels": torch.as_tensor(out["labels"]).detach().to("cpu", torch.int64).reshape(-1).numpy(),
            })

    def evaluate(self) -> Dict[str, Dict[str, float]]:
        """Box AP in percent: {"bbox": {"AP", "AP50", "AP75", "APs", "APm", "APl", "AP-<class>"...}}.

        NaN where pycocotools has nothing to score (e.g. APl without large ground-truth boxes).
        Returns {} on processes other than rank 0 when distributed.
        """
        if self._distributed:
            per_rank = comm.all_gather(self._predictions)
            if not comm.is_main_process():
                return {}
            predictions = [p for rank_predictions in per_rank for p in rank_predictions]
        else:
            predictions = self._predictions

        coco_gt = self.coco_gt
        category_ids = self._category_mapping(coco_gt)
        results = self._to_coco_results(coco_gt, predictions, category_ids)
        if self._output_dir:
            path = os.path.join(self._output_dir, RESULTS_FILE_NAME)
            atomic_write(path, lambda f: json.dump(results, f), binary=False)
            logger.info("Wrote %d detections to %s", len(results), path)
        if not results:
            logger.warning("COCOEvaluator: no detections at all for %d images; AP is 0 for every category "
                           "with ground truth", len(coco_gt.imgs))

        coco_eval = self._run_cocoeval(coco_gt, results)
        metrics = {name: _to_percent(coco_eval.stats[i]) for i, name in enumerate(SUMMARY_METRICS)}
        per_class = self._per_class_ap(coco_gt, coco_eval, category_ids)
        logger.info("Box AP (%%) on '%s':\n%s", self._json_file,
                    format_table(SUMMARY_METRICS, [[metrics[name] for name in SUMMARY_METRICS]]))
        logger.info("Per-category box AP (%%):\n%s", format_per_class_table(per_class))
        metrics.update({f"AP-{name}": ap for name, ap in per_class.items()})
        return {"bbox": metrics}

    def _category_mapping(self, coco_gt: COCO) -> Dict[int, int]:
        """Model label -> dataset category id, checked against the ground truth's categories."""
        gt_category_ids = sorted(coco_gt.getCatIds())
        if self._contiguous_to_category_id is None:
            mapping = dict(enumerate(gt_category_ids))
            self._check_class_names(mapping)
            return mapping
        unknown = sorted(set(self._contiguous_to_category_id.values()) - set(gt_category_ids))
        if unknown:
            raise ValueError(f"COCOEvaluator: contiguous_to_category_id maps to category ids {unknown} that "
                             f"'{self._json_file}' does not have (its ids: {gt_category_ids})")
        return self._contiguous_to_category_id

    def _check_class_names(self, category_ids: Mapping[int, int]) -> None:
        if self._class_names is None:
            return
        unnamed = sorted(k for k in category_ids if not 0 <= k < len(self._class_names))
        if unnamed:
            raise ValueError(f"COCOEvaluator: contiguous ids {unnamed} have no entry in class_names "
                             f"({len(self._class_names)} names)")

    def _to_coco_results(
        self, coco_gt: COCO, predictions: List[Dict[str, Any]], category_ids: Dict[int, int]
    ) -> List[Dict[str, Any]]:
        """Per-image arrays -> COCO results entries, in the ground truth's image order."""
        image_order = {image_id: i for i, image_id in enumerate(coco_gt.getImgIds())}
        unknown = [p["image_id"] for p in predictions if p["image_id"] not in image_order]
        if unknown:
            raise ValueError(f"COCOEvaluator: image ids {unknown[:10]} (of {len(unknown)} unknown) are not in "
                             f"'{self._json_file}'")
        by_image: Dict[Any, Dict[str, Any]] = {}
        for p in predictions:
            # A sampler that pads the last shard repeats images; their predictions are identical.
            by_image.setdefault(p["image_id"], p)
        if len(by_image) < len(predictions):
            logger.info("COCOEvaluator: ignored %d repeated images", len(predictions) - len(by_image))

        results = []
        dropped: Dict[int, int] = {}  # label -> detections left out
        for image_id in sorted(by_image, key=image_order.__getitem__):
            p = by_image[image_id]
            bad_labels = sorted(set(p["labels"].tolist()) - set(category_ids))
            if bad_labels and not self._drop_unmapped_labels:
                raise ValueError(f"COCOEvaluator: labels {bad_labels} of image {image_id} have no category id; "
                                 f"known contiguous labels: {sorted(category_ids)}")
            for box, score, label in zip(p["boxes_xywh"].tolist(), p["scores"].tolist(), p["labels"].tolist()):
                if label not in category_ids:
                    dropped[label] = dropped.get(label, 0) + 1
                    continue
                results.append({"image_id": image_id, "category_id": category_ids[label], "bbox": box,
                                "score": score})
        if dropped:
            logger.warning("COCOEvaluator: left out %d detections with labels that stand for no category of '%s' "
                           "(labels %s)", sum(dropped.values()), self._json_file, sorted(dropped))
        return results

    def _run_cocoeval(self, coco_gt: COCO, results: List[Dict[str, Any]]) -> COCOeval:
        if results:
            # loadRes adds keys to each entry; copies keep the written results clean.
            coco_dt, _ = _quietly(coco_gt.loadRes, [dict(r) for r in results])
        else:
            # loadRes cannot take an empty list; an empty results set scores every image as missed.
            coco_dt = COCO()
            coco_dt.dataset = {"images": list(coco_gt.dataset["images"]),
                               "categories": list(coco_gt.dataset["categories"]), "annotations": []}
            _quietly(coco_dt.createIndex)
        coco_eval = COCOeval(coco_gt, coco_dt, iouType="bbox")
        _quietly(coco_eval.evaluate)
        _quietly(coco_eval.accumulate)
        _, summary = _quietly(coco_eval.summarize)
        logger.info("pycocotools summary:\n%s", summary.rstrip())
        return coco_eval

    def _per_class_ap(self, coco_gt: COCO, coco_eval: COCOeval, category_ids: Dict[int, int]) -> Dict[str, float]:
        """AP of each model label, averaged over IoU thresholds and recalls like the summary AP."""
        # precision: (IoU thresholds, recall points, categories, area ranges, max detections);
        # area range 0 is "all" and the last max-detections entry is 100, as the summary AP uses.
        precision = coco_eval.eval["precision"]
        per_class = {}
        for label in sorted(category_ids):
            category_id = category_ids[label]
            name = self._class_names[label] if self._class_names is not None else coco_gt.cats[category_id]["name"]
            values = precision[:, :, coco_eval.params.catIds.index(category_id), 0, -1]
            values = values[values > -1]
            per_class[name] = float(np.mean(values)) * 100.0 if values.size else math.nan
        return per_class
