"""DetectionTransformer: what DeformableDETR asks of a transformer, and a replacement that implements only that."""
import pytest
import torch
from torch import nn

import ddetr_plugin.modeling  # noqa: F401  (registers the components)
from ddetr_plugin.config import get_cfg
from ddetr_plugin.modeling.meta_arch import build_model
from ddetr_plugin.modeling.transformer import (
    DecoderOutput,
    DecoderQueries,
    DeformableTransformer,
    DetectionTransformer,
    FlatLevels,
)
from ddetr_plugin.registry import TRANSFORMER_REGISTRY


@TRANSFORMER_REGISTRY.register()
class InterfaceOnlyTransformer(DetectionTransformer):
    """Mean-pooled memory, learned queries, one linear layer per "decoder layer": the interface and no more."""

    def __init__(self, d_model: int, num_feature_levels: int, num_decoder_layers: int):
        super().__init__(d_model, num_feature_levels, num_decoder_layers, two_stage=False)
        self.layers = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(num_decoder_layers))
        self.calls = []

    @classmethod
    def from_config(cls, cfg) -> dict:
        return dict(d_model=cfg.MODEL.TRANSFORMER.D_MODEL, num_feature_levels=cfg.MODEL.NUM_FEATURE_LEVELS,
                    num_decoder_layers=cfg.MODEL.TRANSFORMER.DEC_LAYERS)

    def flatten(self, srcs, masks, pos_embeds) -> FlatLevels:
        self.calls.append("flatten")
        shapes = [tuple(src.shape[-2:]) for src in srcs]
        starts = torch.tensor([0] + [h * w for h, w in shapes[:-1]]).cumsum(0)
        batch = srcs[0].shape[0]
        return FlatLevels(
            src=torch.cat([src.flatten(2).transpose(1, 2) for src in srcs], 1),
            pos=torch.cat([pos.flatten(2).transpose(1, 2) for pos in pos_embeds], 1),
            padding_mask=torch.cat([mask.flatten(1) for mask in masks], 1),
            spatial_shapes=torch.tensor(shapes), level_start_index=starts,
            valid_ratios=torch.ones(batch, len(srcs), 2), valid_sizes=torch.ones(batch, len(srcs), 2), shapes=shapes,
        )

    def encode(self, levels, record=None) -> torch.Tensor:
        self.calls.append("encode")
        return levels.src + levels.pos

    def select_queries(self, memory, levels, num_queries, query_embed=None, proposal_class_head=None,
                       proposal_box_head=None) -> DecoderQueries:
        self.calls.append("select_queries")
        position, content = query_embed.split(self.d_model, dim=1)
        batch = memory.shape[0]
        target = content.expand(batch, -1, -1) + memory.mean(1, keepdim=True)
        return DecoderQueries(target, position.expand(batch, -1, -1), position[:, :2].sigmoid().expand(batch, -1, -1),
                              None, None)

    def decode(self, queries, memory, levels, bbox_embed=None, record=None) -> DecoderOutput:
        self.calls.append("decode")
        states, target = [], queries.target
        for layer in self.layers:
            target = layer(target + queries.query_pos)
            states.append(target)
        return DecoderOutput(torch.stack(states), [queries.reference_points] * len(self.layers))


def _cfg(name: str):
    cfg = get_cfg()
    cfg.merge_from_list([
        "MODEL.DEVICE", "cpu", "MODEL.NUM_CLASSES", 3, "MODEL.NUM_QUERIES", 5, "MODEL.NUM_FEATURE_LEVELS", 2,
        "MODEL.BACKBONE.DEPTH", 18, "MODEL.BACKBONE.NORM", "BN", "MODEL.BACKBONE.OUT_FEATURES", ["layer3", "layer4"],
        "MODEL.TRANSFORMER.NAME", name,
        "MODEL.TRANSFORMER.D_MODEL", 32, "MODEL.TRANSFORMER.DEC_LAYERS", 3,
    ])
    return cfg


def test_a_replacement_implementing_only_the_interface_runs_inside_deformable_detr():
    torch.manual_seed(0)
    model = build_model(_cfg("InterfaceOnlyTransformer"))
    assert isinstance(model.transformer, InterfaceOnlyTransformer) and len(model.class_embed) == 3
    inputs = [{"image": torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8),
               "targets": {"boxes": torch.tensor([[2.0, 4.0, 30.0, 40.0]]), "labels": torch.tensor([1])}}]
    losses = model.train()(inputs)
    assert model.transformer.calls == ["flatten", "encode", "select_queries", "decode"]
    assert {"loss_ce", "loss_ce_0", "loss_ce_1"} <= losses.keys()
    sum(losses.values()).backward()
    assert all(layer.weight.grad.abs().max() > 0 for layer in model.transformer.layers)
    detections = model.eval()(inputs)
    assert detections[0]["boxes"].shape[-1] == 4


def test_the_interface_is_what_the_meta_arch_uses():
    assert DetectionTransformer.__abstractmethods__ == {"flatten", "encode", "select_queries", "decode"}
    assert issubclass(DeformableTransformer, DetectionTransformer)
    with pytest.raises(TypeError, match="abstract"):
        DetectionTransformer(32, 2, 2, False)
    transformer = build_model(_cfg("DeformableTransformer")).transformer
    assert (transformer.d_model, transformer.num_feature_levels, transformer.num_decoder_layers,
            transformer.two_stage) == (32, 2, 3, False)
