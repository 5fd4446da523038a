"""Which Deformable DETR a state dict holds, and the config that builds it.

``ModelVariant`` gathers the architecture choices of a model: feature levels, box
refinement, two-stage, classes, queries, sizes, backbone. Most are read off a state
dict in our layout (shapes and which keys exist); the few the weights cannot show
(attention heads, DC5 dilation, refinement when the heads are still identical, the
number of two-stage proposals) come from the source checkpoint's own settings.
Every converter renames to our layout first and infers the variant here, so this
logic exists once; the ResNet's depth comes from the backbone's own layout table
(``modeling/backbone/resnet.py``).

``infer_label_space`` decides MODEL.LABEL_SPACE for converted weights, which neither source
format stores.
"""
import dataclasses
from typing import Any, Dict, Mapping, NamedTuple, Optional, Tuple

import torch

from ddetr_plugin.config import get_cfg
from ddetr_plugin.config.dotted import config_value, config_with, typed

from ..data.label_space import CATEGORY_ID, CONTIGUOUS
from ..modeling.backbone.resnet import ResNetLayout, resnet_layout_of
from ..utils.file_io import atomic_write
from .renaming import HEADS, StateDict, count_indices

BACKBONE_PREFIX = "backbone.body."
POSITION_ENCODINGS = ("PositionEmbeddingSine", "PositionEmbeddingLearned")


@dataclasses.dataclass(frozen=True)
class ModelVariant:
    """The architecture of a Deformable DETR with a ResNet backbone (see ``CONFIG_KEYS``)."""

    num_classes: int
    num_queries: int
    num_feature_levels: int
    with_box_refine: bool
    two_stage: bool
    d_model: int
    nheads: int
    enc_layers: int
    dec_layers: int
    dim_feedforward: int
    enc_n_points: int
    dec_n_points: int
    backbone_depth: int
    backbone_out_features: Tuple[str, ...]
    dilation: bool
    position_encoding: str

    @classmethod
    def from_config(cls, cfg) -> "ModelVariant":
        """The variant ``cfg`` builds.

        Raises:
            ValueError: the config's backbone or position encoding is not one the converters know.
        """
        if cfg.MODEL.BACKBONE.NAME != "ResNetBackbone":
            raise ValueError(f"MODEL.BACKBONE.NAME is {cfg.MODEL.BACKBONE.NAME!r}; checkpoint conversion "
                             f"handles 'ResNetBackbone' only")
        values = {field: config_value(cfg, key) for field, key in CONFIG_KEYS.items()}
        values["backbone_out_features"] = tuple(values["backbone_out_features"])
        if values["position_encoding"] not in POSITION_ENCODINGS:
            raise ValueError(f"MODEL.POSITION_ENCODING.NAME is {values['position_encoding']!r}; checkpoint "
                             f"conversion handles {', '.join(POSITION_ENCODINGS)}")
        return cls(**values)

    @classmethod
    def from_state_dict(
        cls,
        state_dict: StateDict,
        *,
        nheads: int,
        with_box_refine: bool,
        dilation: bool,
        num_queries: Optional[int] = None,
    ) -> "ModelVariant":
        """The variant of a state dict in our layout.

        Args:
            nheads: attention heads (the shapes hold heads x points only).
            with_box_refine: the weights cannot show it once the per-layer heads are identical.
            dilation: DC5 (same weights as without).
            num_queries: required for two-stage models (they have no query embedding);
                checked against the query embedding otherwise.

        Raises:
            ValueError: the state dict lacks a key that decides the variant, or its shapes fit no variant.
        """
        _require(state_dict, "transformer.level_embed", "class_embed.0.weight", "backbone.body.conv1.weight")
        num_levels, d_model = state_dict["transformer.level_embed"].shape
        enc_layers = count_indices(state_dict, "transformer.encoder.layers.")
        dec_layers = count_indices(state_dict, "transformer.decoder.layers.")
        if enc_layers == 0 or dec_layers == 0:
            raise ValueError(f"the state dict has {enc_layers} encoder and {dec_layers} decoder layers; "
                             f"expected at least one of each")
        enc_ffn = state_dict["transformer.encoder.layers.0.linear1.weight"].shape[0]
        dec_ffn = state_dict["transformer.decoder.layers.0.linear1.weight"].shape[0]
        if enc_ffn != dec_ffn:
            raise ValueError(f"encoder FFN size {enc_ffn} differs from decoder FFN size {dec_ffn}; "
                             f"MODEL.TRANSFORMER.DIM_FEEDFORWARD sets both")
        two_stage = "transformer.enc_output.weight" in state_dict
        if two_stage:
            if num_queries is None:
                raise ValueError("a two-stage checkpoint does not show its number of queries; pass num_queries")
        else:
            _require(state_dict, "query_embed.weight")
            stored = state_dict["query_embed.weight"].shape[0]
            if num_queries is not None and num_queries != stored:
                raise ValueError(f"query_embed has {stored} queries, not the {num_queries} the settings say")
            num_queries = stored
        backbone = resnet_layout_of(key[len(BACKBONE_PREFIX):] for key in state_dict
                                    if key.startswith(BACKBONE_PREFIX))
        position_encoding = ("PositionEmbeddingLearned" if "position_encoding.row_embed.weight" in state_dict
                             else "PositionEmbeddingSine")
        return cls(
            num_classes=state_dict["class_embed.0.weight"].shape[0],
            num_queries=num_queries,
            num_feature_levels=num_levels,
            with_box_refine=with_box_refine,
            two_stage=two_stage,
            d_model=d_model,
            nheads=nheads,
            enc_layers=enc_layers,
            dec_layers=dec_layers,
            dim_feedforward=enc_ffn,
            enc_n_points=_points(state_dict, "transformer.encoder.layers.0.self_attn", nheads, num_levels),
            dec_n_points=_points(state_dict, "transformer.decoder.layers.0.cross_attn", nheads, num_levels),
            backbone_depth=backbone.depth,
            backbone_out_features=_backbone_out_features(state_dict, num_levels, backbone),
            dilation=dilation,
            position_encoding=position_encoding,
        )

    @property
    def num_heads_per_kind(self) -> int:
        """Class (and box) heads: one per decoder layer, plus the encoder's with two-stage."""
        return self.dec_layers + 1 if self.two_stage else self.dec_layers

    @property
    def decoder_head_references(self) -> Tuple[str, ...]:
        """The heads the decoder holds references to, which the official and HF formats save again:
        the box heads with refinement, the class heads with two-stage."""
        return tuple(head for head, on in zip(HEADS, (self.two_stage, self.with_box_refine)) if on)

    def config_values(self) -> Dict[str, Any]:
        """Dotted config keys and the values that build this variant."""
        values = {key: getattr(self, field) for field, key in CONFIG_KEYS.items()}
        values["MODEL.BACKBONE.OUT_FEATURES"] = list(self.backbone_out_features)
        values["MODEL.BACKBONE.NAME"] = "ResNetBackbone"
        return values

    def check_claims(self, claims: Mapping[str, Any], source: str) -> None:
        """Raise if a setting stored with the weights (``claims``: field -> value, None = unknown)
        contradicts what the weights show."""
        wrong = [f"{field}: {value!r} in {source}, {getattr(self, field)!r} in the weights"
                 for field, value in claims.items() if value is not None and value != getattr(self, field)]
        if wrong:
            raise ValueError(f"the checkpoint's settings contradict its weights: {'; '.join(wrong)}")

    def describe(self) -> str:
        kind = "two-stage" if self.two_stage else "box refinement" if self.with_box_refine else "plain"
        if self.two_stage and self.with_box_refine:
            kind += " with box refinement"
        dc5 = " DC5" if self.dilation else ""
        return (f"{kind}, ResNet-{self.backbone_depth}{dc5}, {self.num_feature_levels} level(s), "
                f"{self.num_classes} classes, {self.num_queries} queries, d_model {self.d_model}, "
                f"{self.enc_layers}+{self.dec_layers} layers")


class ConvertedCheckpoint(NamedTuple):
    """A state dict in our layout, its variant, and the config values (dotted keys, in the types of
    the defaults) of the model it fits: the variant's and the training settings the source stored.
    ``notes``: lines about values the converter had to decide, for the log and the written YAML."""

    state_dict: StateDict
    variant: ModelVariant
    config_values: Dict[str, Any]
    notes: Tuple[str, ...] = ()

    @classmethod
    def with_label_space(
        cls, state_dict: StateDict, variant: "ModelVariant", values: Mapping[str, Any],
        id2label: Optional[Mapping[Any, Any]] = None,
    ) -> "ConvertedCheckpoint":
        """``values`` (typed) with MODEL.LABEL_SPACE as ``infer_label_space`` decides it, noting why."""
        space, note = infer_label_space(variant.num_classes, id2label)
        return cls(state_dict, variant, typed({**values, "MODEL.LABEL_SPACE": space}), notes=(note,) if note else ())

    def config(self):
        """The defaults with ``config_values`` set (a mutable CfgNode)."""
        return config_with(self.config_values)


# ModelVariant field -> config key
CONFIG_KEYS = {
    "num_classes": "MODEL.NUM_CLASSES",
    "num_queries": "MODEL.NUM_QUERIES",
    "num_feature_levels": "MODEL.NUM_FEATURE_LEVELS",
    "with_box_refine": "MODEL.WITH_BOX_REFINE",
    "two_stage": "MODEL.TWO_STAGE",
    "d_model": "MODEL.TRANSFORMER.D_MODEL",
    "nheads": "MODEL.TRANSFORMER.NHEADS",
    "enc_layers": "MODEL.TRANSFORMER.ENC_LAYERS",
    "dec_layers": "MODEL.TRANSFORMER.DEC_LAYERS",
    "dim_feedforward": "MODEL.TRANSFORMER.DIM_FEEDFORWARD",
    "enc_n_points": "MODEL.TRANSFORMER.ENC_N_POINTS",
    "dec_n_points": "MODEL.TRANSFORMER.DEC_N_POINTS",
    "backbone_depth": "MODEL.BACKBONE.DEPTH",
    "backbone_out_features": "MODEL.BACKBONE.OUT_FEATURES",
    "dilation": "MODEL.BACKBONE.DILATION",
    "position_encoding": "MODEL.POSITION_ENCODING.NAME",
}


# COCO's category ids run 1..90 (80 of them used); the official models and the HF hub's COCO
# checkpoints have 91 classes because their labels are those ids.
COCO_CATEGORY_ID_CLASSES = 91


def infer_label_space(num_classes: int, id2label: Optional[Mapping[Any, Any]] = None) -> Tuple[str, Optional[str]]:
    """(MODEL.LABEL_SPACE, a note saying why and how to override, or None) for converted weights.

    Neither the official nor the HF format says how labels map to categories. A 91-class head is read
    as COCO category ids, as the official and HF COCO models use them; HF's ``id2label`` settles it when
    it names COCO classes: label 1 "person" with label 12 (an id COCO leaves unused) absent or "N/A"
    confirms it, label 0 "person" means contiguous labels. Other numbers of classes: contiguous (the
    default), without a note.
    """
    if num_classes != COCO_CATEGORY_ID_CLASSES:
        return CONTIGUOUS, None
    names = {str(key): str(value) for key, value in (id2label or {}).items()}
    if names.get("0") == "person":
        space, reason = CONTIGUOUS, "config.json's id2label names label 0 'person'"
    elif names.get("1") == "person" and names.get("12", "N/A") == "N/A":
        space, reason = CATEGORY_ID, "91 classes, and config.json's id2label names COCO ids (1 'person', 12 unused)"
    else:
        space, reason = CATEGORY_ID, "91 classes: the official and HF COCO models use COCO's category ids as labels"
    other = CONTIGUOUS if space == CATEGORY_ID else CATEGORY_ID
    return space, (f"MODEL.LABEL_SPACE {space} ({reason}); if the model was trained with {other} labels, "
                   f"set MODEL.LABEL_SPACE {other}")


def variant_of_weights(state_dict: StateDict, cfg) -> ModelVariant:
    """The variant ``cfg`` describes, after checking that ``state_dict`` (our layout) is that model.

    Raises:
        ValueError: naming each config key whose value the weights contradict.
    """
    expected = ModelVariant.from_config(cfg)
    found = ModelVariant.from_state_dict(
        state_dict, nheads=expected.nheads, with_box_refine=expected.with_box_refine, dilation=expected.dilation,
        # one-stage weights show their queries, compared below; two-stage ones need the number
        num_queries=expected.num_queries if "transformer.enc_output.weight" in state_dict else None,
    )
    fields = [field.name for field in dataclasses.fields(ModelVariant)]
    wrong = [f"{CONFIG_KEYS[field]} is {getattr(expected, field)!r} in the config but {getattr(found, field)!r} "
             f"in the weights" for field in fields if getattr(found, field) != getattr(expected, field)]
    if wrong:
        raise ValueError("the weights are not the model the config describes: " + "; ".join(wrong))
    return expected


def variant_for_export(state_dict: StateDict, cfg, target: str, unstorable: Tuple[str, ...]) -> ModelVariant:
    """``variant_of_weights`` for writing ``target``'s format, whose ResNet has batch norm and which cannot
    store the ``unstorable`` config keys (they must keep their defaults).

    Raises:
        ValueError: as ``variant_of_weights``; a backbone norm other than batch norm; naming each of
            ``unstorable`` that is not at its default.
    """
    variant = variant_of_weights(state_dict, cfg)
    if cfg.MODEL.BACKBONE.NORM not in ("FrozenBN", "BN", "SyncBN"):
        raise ValueError(f"MODEL.BACKBONE.NORM is {cfg.MODEL.BACKBONE.NORM!r}; the {target} ResNet has batch norm")
    defaults = get_cfg()
    wrong = [f"{key} is {config_value(cfg, key)!r} (the {target} format supports only {config_value(defaults, key)!r})"
             for key in unstorable if config_value(cfg, key) != config_value(defaults, key)]
    if wrong:
        raise ValueError("cannot convert: " + "; ".join(wrong))
    return variant


def save_state_dict(path: str, state_dict: StateDict) -> None:
    """Write ``{"model": state_dict}`` to ``path`` atomically (loadable with ``weights_only=True``)."""
    atomic_write(path, lambda f: torch.save({"model": state_dict}, f))


def _require(state_dict: StateDict, *keys: str) -> None:
    missing = [key for key in keys if key not in state_dict]
    if missing:
        raise ValueError(f"the state dict lacks {', '.join(missing)}; it is not a Deformable DETR with a "
                         f"ResNet backbone in the expected layout")


def _points(state_dict: StateDict, attention: str, nheads: int, num_levels: int) -> int:
    """Sampling points per head and level: sampling_offsets has heads x levels x points x 2 rows."""
    rows = state_dict[f"{attention}.sampling_offsets.weight"].shape[0]
    if rows % (nheads * num_levels * 2):
        raise ValueError(f"{attention}.sampling_offsets has {rows} rows, not a multiple of "
                         f"{nheads} heads x {num_levels} levels x 2; wrong number of heads?")
    return rows // (nheads * num_levels * 2)


def _backbone_out_features(state_dict: StateDict, num_levels: int, backbone: ResNetLayout) -> Tuple[str, ...]:
    """The stages whose outputs the 1x1 input projections read, identified by their channels."""
    stage_by_channels = {channels: stage for stage, channels in backbone.stage_channels().items()}
    stages = []
    for level in range(num_levels):
        _require(state_dict, f"input_proj.{level}.0.weight")
        _, in_channels, kernel, _ = state_dict[f"input_proj.{level}.0.weight"].shape
        if kernel == 1:
            if in_channels not in stage_by_channels:
                raise ValueError(f"input_proj.{level} reads {in_channels} channels, the output of no ResNet stage")
            stages.append(stage_by_channels[in_channels])
    if not stages:
        raise ValueError("no input projection reads a backbone stage (no 1x1 input_proj)")
    return tuple(stages)
