"""The name of every model label, wherever it is known.

Names travel with the model so that a converted or exported model (HF ``id2label``, the
safetensors metadata, the demo's JSON) says "circle" rather than "LABEL_0":

1. ``MODEL.CLASS_NAMES`` in the config, when set (``--from hf`` writes it from ``id2label``);
2. the names stored in the checkpoint (the trainer saves those of DATASETS.TRAIN in every
   checkpoint, under "class_names");
3. the metadata of DATASETS.TEST[0], read in MODEL.LABEL_SPACE, when it can be loaded (only
   that one: a training set's annotation file can be large);
4. none: callers fall back to ``class_<label>``.
"""
import logging
from typing import Optional, Sequence

from fvcore.common.config import CfgNode

from .build import training_label_space
from .catalog import get_metadata
from .label_space import LabelSpace

logger = logging.getLogger(__name__)


def check_class_names(names: Sequence[str], num_classes: int, source: str) -> list[str]:
    """``names`` as a list of strings, after checking there is one per class.

    Raises:
        ValueError: naming ``source`` (e.g. "MODEL.CLASS_NAMES"), when the count is not ``num_classes``.
    """
    names = [str(name) for name in names]
    if len(names) != num_classes:
        raise ValueError(f"{source} has {len(names)} names but MODEL.NUM_CLASSES is {num_classes}: give one name "
                         f"per class, in label order")
    return names


def model_class_names(cfg: CfgNode, stored: Optional[Sequence[str]] = None) -> Optional[list[str]]:
    """The names of labels 0..MODEL.NUM_CLASSES-1, or None when nothing names them (see the module doc).

    Args:
        stored: the names saved with the weights (a checkpoint's "class_names"), if any.

    Raises:
        ValueError: MODEL.CLASS_NAMES or ``stored`` does not have one name per class, or MODEL.NUM_CLASSES
            is too small for a dataset in MODEL.LABEL_SPACE.
    """
    num_classes = cfg.MODEL.NUM_CLASSES
    if cfg.MODEL.CLASS_NAMES:
        return check_class_names(cfg.MODEL.CLASS_NAMES, num_classes, "MODEL.CLASS_NAMES")
    if stored:
        return check_class_names(stored, num_classes, "the checkpoint's class_names")
    if not cfg.DATASETS.TEST:
        return None
    try:
        metadata = get_metadata(cfg.DATASETS.TEST[0])
    except Exception as e:  # an unregistered or missing dataset only costs the names
        logger.warning("No class names (%s: %s); labels are named class_<label>", type(e).__name__, e)
        return None
    return LabelSpace.from_metadata(cfg.MODEL.LABEL_SPACE, metadata, num_classes).class_names


def training_class_names(cfg: CfgNode) -> Optional[list[str]]:
    """The names training stores in its checkpoints: MODEL.CLASS_NAMES, else those of DATASETS.TRAIN in
    MODEL.LABEL_SPACE (None without training sets).

    Raises:
        ValueError: MODEL.CLASS_NAMES does not have one name per class (see ``model_class_names``).
    """
    if cfg.MODEL.CLASS_NAMES:
        return check_class_names(cfg.MODEL.CLASS_NAMES, cfg.MODEL.NUM_CLASSES, "MODEL.CLASS_NAMES")
    return training_label_space(cfg).class_names if cfg.DATASETS.TRAIN else None
