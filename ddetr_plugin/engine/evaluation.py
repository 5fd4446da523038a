"""Evaluating a model on every dataset of DATASETS.TEST with the COCO evaluator."""
import logging
import os
from typing import Dict, Iterable, Optional

from fvcore.common.config import CfgNode
from torch import nn

from ..data import LabelSpace, build_test_loader, get_metadata
from ..evaluation import COCOEvaluator, inference_on_dataset, print_csv_format
from ..utils import comm

logger = logging.getLogger(__name__)

Results = Dict[str, Dict[str, float]]  # {"bbox": {"AP": 50.0, ...}}


def inference_dir(output_dir: str, dataset_name: str, num_datasets: int) -> str:
    """Where the detections of ``dataset_name`` go: OUTPUT_DIR/inference, or OUTPUT_DIR/inference/<name>
    when several datasets are evaluated."""
    base = os.path.join(output_dir, "inference")
    return base if num_datasets == 1 else os.path.join(base, dataset_name)


def build_evaluator(cfg: CfgNode, dataset_name: str, output_dir: Optional[str]) -> COCOEvaluator:
    """A COCOEvaluator against ``dataset_name``'s ground-truth JSON that reads the model's labels in
    MODEL.LABEL_SPACE (data/label_space.py): their category ids and class names.

    Detections whose label stands for no category of the dataset (a model with more classes than the
    dataset has, or an unused COCO id of the "category_id" space) are left out, as pycocotools leaves out
    categories its ground truth lacks.

    Raises:
        ValueError: MODEL.LABEL_SPACE is unknown, or MODEL.NUM_CLASSES too small for the dataset.
    """
    metadata = get_metadata(dataset_name)
    labels = LabelSpace.from_metadata(cfg.MODEL.LABEL_SPACE, metadata, cfg.MODEL.NUM_CLASSES)
    return COCOEvaluator(
        metadata.json_file,
        contiguous_to_category_id=labels.label_to_category_id,
        class_names=labels.class_names,
        output_dir=output_dir,
        distributed=True,
        drop_unmapped_labels=True,
    )


class DatasetsEvaluation:
    """``evaluation(model)`` -> ``{dataset name: {"bbox": {...}}}`` for every DATASETS.TEST name.

    Test loaders are built once and reused by later (periodic) evaluations. Every process runs its
    shard; the metrics are returned on the main process ({} for each dataset elsewhere), and the
    main process writes each dataset's coco_instances_results.json under OUTPUT_DIR/inference.
    """

    def __init__(self, cfg: CfgNode, dataset_names: Optional[Iterable[str]] = None):
        self.cfg = cfg
        self.dataset_names = list(cfg.DATASETS.TEST if dataset_names is None else dataset_names)
        self._loaders: Dict[str, Iterable] = {}
        # MODEL.NUM_CLASSES too small for a test dataset is found now, not after training.
        for name in self.dataset_names:
            LabelSpace.from_config(cfg, name)

    def __call__(self, model: nn.Module) -> Dict[str, Results]:
        if not self.dataset_names:
            logger.warning("DATASETS.TEST is empty: nothing to evaluate")
        results: Dict[str, Results] = {}
        for name in self.dataset_names:
            if name not in self._loaders:
                self._loaders[name] = build_test_loader(
                    self.cfg, name, rank=comm.get_rank(), world_size=comm.get_world_size()
                )
            output_dir = inference_dir(self.cfg.OUTPUT_DIR, name, len(self.dataset_names)) \
                if self.cfg.OUTPUT_DIR else None
            evaluator = build_evaluator(self.cfg, name, output_dir)
            logger.info("Evaluating on %s", name)
            results[name] = inference_on_dataset(model, self._loaders[name], evaluator)
            if comm.is_main_process() and results[name]:
                print_csv_format(results[name])
        return results
