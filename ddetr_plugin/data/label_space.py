"""The model's label space: which class index of the model stands for which dataset category.

Records number a dataset's categories contiguously, 0..C-1 in increasing id order
(coco.py). ``MODEL.LABEL_SPACE`` says what the model's labels are:

- "contiguous" (the default): label ``c`` is record category ``c``, the c-th category
  by id. Needs ``MODEL.NUM_CLASSES >= C``.
- "category_id": the label is the dataset's category id itself, as in the official
  implementation and the HF hub's COCO checkpoints (91 classes: COCO ids 1..90, with
  unused ids in between whose classes are never positive). Needs ``MODEL.NUM_CLASSES``
  greater than the largest id.

``LabelSpace.from_metadata`` turns that choice and a dataset's metadata into the maps
the pipeline uses: record category -> training label (the mapper), model label ->
dataset category id (the evaluator) and class names by model label (evaluation tables,
the demo). Labels that stand for no category (beyond the dataset's categories, or
unused ids) are named ``class_<label>``, as ``utils.visualization.class_name`` does.
"""
import dataclasses

from fvcore.common.config import CfgNode

from ..utils.visualization import class_name
from .catalog import DatasetMetadata, get_metadata

CONTIGUOUS = "contiguous"
CATEGORY_ID = "category_id"
LABEL_SPACES = (CONTIGUOUS, CATEGORY_ID)


def check_label_space_name(label_space: str) -> None:
    """Raise ValueError, listing the choices, unless ``label_space`` is one of ``LABEL_SPACES``."""
    if label_space not in LABEL_SPACES:
        raise ValueError(f"MODEL.LABEL_SPACE must be one of {', '.join(map(repr, LABEL_SPACES))}, "
                         f"got {label_space!r}")


@dataclasses.dataclass(frozen=True)
class LabelSpace:
    """The model labels of one dataset in one label space.

    Attributes:
        space: "contiguous" or "category_id".
        dataset_name: the dataset the maps are for.
        num_classes: the model's number of classes (labels 0..num_classes-1).
        record_to_label: record category (contiguous, 0..C-1) -> training label.
        label_to_category_id: model label -> the dataset's category id, for each label that has one.
        class_names: the name of every model label, ``class_<label>`` where the label has no category.
    """

    space: str
    dataset_name: str
    num_classes: int
    record_to_label: dict[int, int]
    label_to_category_id: dict[int, int]
    class_names: list[str]

    @classmethod
    def from_metadata(cls, label_space: str, metadata: DatasetMetadata, num_classes: int) -> "LabelSpace":
        """The labels of ``metadata``'s dataset for a model of ``num_classes`` classes.

        Raises:
            ValueError: ``label_space`` is unknown (the message lists the choices), or ``num_classes`` is
                too small for the dataset in that space (the message names MODEL.NUM_CLASSES,
                MODEL.LABEL_SPACE, the dataset and what it needs).
        """
        check_label_space_name(label_space)
        category_ids = metadata.contiguous_id_to_thing_dataset_id  # record category -> dataset id
        if label_space == CONTIGUOUS:
            record_to_label = {c: c for c in category_ids}
            needed = len(category_ids)
            if num_classes < needed:
                raise ValueError(
                    f"MODEL.NUM_CLASSES is {num_classes}, fewer than the {needed} categories of dataset "
                    f"{metadata.name!r} (MODEL.LABEL_SPACE {label_space!r}: label c is its c-th category by "
                    f"id); set MODEL.NUM_CLASSES {needed}")
        else:
            record_to_label = dict(category_ids)
            largest = max(category_ids.values(), default=-1)
            if num_classes <= largest:
                raise ValueError(
                    f"MODEL.NUM_CLASSES is {num_classes}, too small for MODEL.LABEL_SPACE {label_space!r} on "
                    f"dataset {metadata.name!r}: its largest category id is {largest}, so the model needs at "
                    f"least {largest + 1} classes (set MODEL.NUM_CLASSES {largest + 1}, or MODEL.LABEL_SPACE "
                    f"{CONTIGUOUS!r} for labels 0..{len(category_ids) - 1})")
        names = [class_name(label, None) for label in range(num_classes)]
        for category, label in record_to_label.items():
            names[label] = metadata.thing_classes[category]
        return cls(
            space=label_space,
            dataset_name=metadata.name,
            num_classes=num_classes,
            record_to_label=record_to_label,
            label_to_category_id={label: category_ids[category] for category, label in record_to_label.items()},
            class_names=names,
        )

    @classmethod
    def from_config(cls, cfg: CfgNode, dataset_name: str) -> "LabelSpace":
        """The labels of ``dataset_name`` (loaded if needed) under MODEL.LABEL_SPACE and MODEL.NUM_CLASSES."""
        return cls.from_metadata(cfg.MODEL.LABEL_SPACE, get_metadata(dataset_name), cfg.MODEL.NUM_CLASSES)
