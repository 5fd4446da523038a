"""ResNet backbone over torchvision's ResNets, laid out like the official checkpoint.

Parameters live under ``body`` with torchvision's names (``body.conv1``,
``body.layer1.0.conv1``, ...), so the official keys ``backbone.0.body.*`` load
after a prefix rename, and a torchvision or timm ResNet state dict loads as is
(timm's ResNet uses torchvision's parameter names).
"""
import logging
import re
from collections import OrderedDict
from typing import Callable, Iterable, NamedTuple

import torch
import torchvision
from fvcore.common.config import CfgNode
from torch import nn

from ...registry import BACKBONE_REGISTRY
from .base import Backbone, ShapeSpec
from .frozen_batchnorm import FrozenBatchNorm2d
from .weights import load_weights, read_state_dict

logger = logging.getLogger(__name__)

RESNET_BUILDERS = {
    18: torchvision.models.resnet18,
    34: torchvision.models.resnet34,
    50: torchvision.models.resnet50,
    101: torchvision.models.resnet101,
    152: torchvision.models.resnet152,
}
STAGES = ("layer1", "layer2", "layer3", "layer4")
# modules of torchvision's ResNet before the stages; avgpool and fc are dropped
STEM = ("conv1", "bn1", "relu", "maxpool")


def norm_layer(norm: str) -> Callable[[int], nn.Module]:
    """The normalisation for ``norm``: "FrozenBN" (official), "BN", "SyncBN" or "GN" (32 groups)."""
    if norm == "FrozenBN":
        return FrozenBatchNorm2d
    if norm == "BN":
        return nn.BatchNorm2d
    if norm == "SyncBN":
        return nn.SyncBatchNorm
    if norm == "GN":
        return lambda channels: nn.GroupNorm(32, channels)
    raise ValueError(f"ResNetBackbone: norm must be one of 'FrozenBN', 'BN', 'SyncBN', 'GN', got {norm!r}")


@BACKBONE_REGISTRY.register()
class ResNetBackbone(Backbone):
    """A torchvision ResNet returning the outputs of the stages in ``out_features``.

    Stages after the deepest one in ``out_features`` are not built. Parameters outside
    ``train_layers`` get ``requires_grad=False``. With "BN"/"SyncBN" the running
    statistics of frozen stages still update in training mode; "FrozenBN" keeps them fixed.
    Weights are torchvision's initialisation (no zero-initialised residual BN) unless
    ``pretrained`` names a local state dict; nothing is downloaded.
    """

    # set by ``enable_cpu_fast_paths``: plain NCHW unless the detector turns the fast paths on
    channels_last_inference: bool = False

    def __init__(
        self,
        depth: int = 50,
        norm: str = "FrozenBN",
        train_layers: list[str] | tuple[str, ...] = ("layer2", "layer3", "layer4"),
        out_features: list[str] | tuple[str, ...] = ("layer2", "layer3", "layer4"),
        dilation: bool = False,
        pretrained: str | None = None,
    ):
        """
        Args:
            depth: 18, 34, 50, 101 or 152.
            norm: "FrozenBN", "BN", "SyncBN" or "GN".
            train_layers: names among conv1, bn1, layer1..layer4 whose parameters train.
            out_features: stages returned by forward, among layer1..layer4.
            dilation: DC5, layer4 dilated instead of strided (stride 16 instead of 32);
                needs a bottleneck ResNet (depth >= 50).
            pretrained: path of a torchvision/timm ResNet state dict to load, or None.
        """
        super().__init__()
        if depth not in RESNET_BUILDERS:
            raise ValueError(f"ResNetBackbone: depth must be one of {sorted(RESNET_BUILDERS)}, got {depth!r}")
        if not out_features or any(name not in STAGES for name in out_features):
            raise ValueError(f"ResNetBackbone: out_features must be a non-empty subset of {STAGES}, "
                             f"got {list(out_features)}")
        if dilation and depth < 50:
            raise ValueError(f"ResNetBackbone: dilation (DC5) needs depth 50 or more, got depth {depth}")
        resnet = RESNET_BUILDERS[depth](
            weights=None, norm_layer=norm_layer(norm), replace_stride_with_dilation=[False, False, dilation]
        )
        last_stage = max(STAGES.index(name) for name in out_features)
        kept = STEM + STAGES[: last_stage + 1]
        unknown_train = [name for name in train_layers if name not in kept or name in ("relu", "maxpool")]
        if unknown_train:
            raise ValueError(f"ResNetBackbone: train_layers {unknown_train} are not layers with parameters in "
                             f"this backbone (conv1, bn1, {', '.join(kept[len(STEM):])})")

        self.body = nn.ModuleDict(OrderedDict((name, getattr(resnet, name)) for name in kept))
        self.depth = depth
        self._out_features = tuple(name for name in STAGES if name in out_features)
        expansion = type(resnet.layer1[0]).expansion
        self._output_shape = {
            name: ShapeSpec(channels=64 * 2**i * expansion, stride=16 if name == "layer4" and dilation else 4 * 2**i)
            for i, name in enumerate(STAGES)
            if name in self._out_features
        }
        for name, parameter in self.body.named_parameters():
            if name.split(".", 1)[0] not in train_layers:
                parameter.requires_grad_(False)
        if pretrained:
            self.load_pretrained(pretrained)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        backbone = cfg.MODEL.BACKBONE
        return {
            "depth": backbone.DEPTH,
            "norm": backbone.NORM,
            "train_layers": list(backbone.TRAIN_LAYERS),
            "out_features": list(backbone.OUT_FEATURES),
            "dilation": backbone.DILATION,
            "pretrained": backbone.PRETRAINED or None,
        }

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images (B, 3, H, W) normalised -> {stage: (B, C, ceil(H / stride), ceil(W / stride))} contiguous.

        With ``channels_last_inference`` (a CPU fast path, ``modeling/cpu_fast_paths.py``), CPU inference
        (no autograd) runs the stages in channels-last layout, where oneDNN's convolutions are faster;
        training stays contiguous, where it brings no gain. The features are returned contiguous: the
        CPU GroupNorm of the input projections differs on channels-last maps from the contiguous kernel,
        the one the official and HF models run.
        """
        channels_last = (self.channels_last_inference and images.device.type == "cpu"
                         and not torch.is_grad_enabled())
        x = images.contiguous(memory_format=torch.channels_last) if channels_last else images
        features = {}
        for name, module in self.body.items():
            x = module(x)
            if name in self._out_features:
                features[name] = x.contiguous() if channels_last else x
        return features

    def output_shape(self) -> dict[str, ShapeSpec]:
        return dict(self._output_shape)

    def load_pretrained(self, path: str) -> tuple[list[str], list[str]]:
        """Load a torchvision/timm ResNet state dict from ``path`` (read by ``read_state_dict``: torch.load
        with ``weights_only=True``, or safetensors); the classifier and stages not built are skipped,
        other missing and unexpected keys are logged by name.

        Returns:
            ``(missing_keys, unexpected_keys)``, the named tuple of ``load_state_dict``.
        """
        state_dict = read_state_dict(path, "ResNetBackbone")
        skipped = {"fc", "avgpool"} | {name for name in STAGES if name not in self.body}
        state_dict = {k: v for k, v in state_dict.items() if k.split(".", 1)[0] not in skipped}
        incompatible = load_weights(self.body, state_dict, path, "ResNetBackbone", f"ResNet-{self.depth}")
        if incompatible.unexpected_keys:
            logger.warning("Backbone weights %s have unused: %s", path, ", ".join(incompatible.unexpected_keys))
        return incompatible


class ResNetLayout(NamedTuple):
    """The residual blocks of torchvision's ResNet of one depth."""

    depth: int
    blocks: tuple[int, ...]  # per stage, layer1..layer4
    bottleneck: bool  # Bottleneck blocks (conv1..conv3, expansion 4) rather than BasicBlock (conv1, conv2)

    def stage_channels(self) -> dict[str, int]:
        """Output channels of each stage (layer1..layer4)."""
        expansion = 4 if self.bottleneck else 1
        return {stage: 64 * 2**i * expansion for i, stage in enumerate(STAGES)}


RESNET_LAYOUTS = {
    18: ResNetLayout(18, (2, 2, 2, 2), False),
    34: ResNetLayout(34, (3, 4, 6, 3), False),
    50: ResNetLayout(50, (3, 4, 6, 3), True),
    101: ResNetLayout(101, (3, 4, 23, 3), True),
    152: ResNetLayout(152, (3, 8, 36, 3), True),
}
# a block's parameters are "{stage}.{block}.<module>.<name>" (torchvision's names, relative to the ResNet)
BLOCK_PARAMETER = re.compile(r"(?P<stage>layer[1-4])\.(?P<block>\d+)\.")
# only a Bottleneck block has a third convolution
BOTTLENECK_PARAMETER = "layer1.0.conv3.weight"


def resnet_layout_of(parameter_names: Iterable[str]) -> ResNetLayout:
    """The layout of the ResNet whose parameter and buffer names (relative to the ResNet, e.g.
    ``layer1.0.conv1.weight``; other names are ignored) these are.

    Raises:
        ValueError: a stage's block indices are not 0..n-1, or the block counts are no ResNet depth's.
    """
    names = list(parameter_names)
    indices: dict[str, set[int]] = {stage: set() for stage in STAGES}
    for name in names:
        match = BLOCK_PARAMETER.match(name)
        if match:
            indices[match.group("stage")].add(int(match.group("block")))
    for stage, found in indices.items():
        if found != set(range(len(found))):
            raise ValueError(f"ResNet stage {stage} has blocks {sorted(found)}; expected 0..{len(found) - 1}")
    blocks = tuple(len(indices[stage]) for stage in STAGES)
    bottleneck = BOTTLENECK_PARAMETER in names
    for layout in RESNET_LAYOUTS.values():
        if (layout.blocks, layout.bottleneck) == (blocks, bottleneck):
            return layout
    kind = "bottleneck" if bottleneck else "basic"
    raise ValueError(f"the backbone has {blocks} {kind} blocks per stage, which is none of ResNet-"
                     f"{', '.join(map(str, RESNET_LAYOUTS))}")
