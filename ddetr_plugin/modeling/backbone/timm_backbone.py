"""Any timm model with a ``features_only`` form as the backbone (ResNets, ConvNeXt, Swin, EfficientNet, RegNet...).

timm is optional (``pip install ddetr_plugin[timm]``): it is imported when a ``TimmBackbone`` is built, so
this module registers the class without it. Nothing is downloaded: the model is built with
``pretrained=False`` and weights come only from a local file.

Feature names are timm's feature-info module names with "." written "_" ("layer2" for a ResNet,
"stages_1" for ConvNeXt, "layers_1" for Swin), so they do not depend on which outputs are chosen.
"""
import ast
import difflib
import logging
import math
from collections import Counter
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from fvcore.common.config import CfgNode
from torch import nn

from ...registry import BACKBONE_REGISTRY
from .base import Backbone, ShapeSpec
from .weights import load_weights, read_state_dict

logger = logging.getLogger(__name__)


def import_timm():
    """The timm module, or an ImportError that says how to install it."""
    try:
        import timm
    except ImportError as e:
        raise ImportError(f"TimmBackbone needs timm ({e}): pip install ddetr_plugin[timm]") from e
    return timm


def parse_model_kwargs(entries: Sequence[str]) -> dict[str, Any]:
    """``["dynamic_img_size=True", "depths=(2, 2, 6, 2)"]`` -> ``{"dynamic_img_size": True, "depths": (2, 2, 6, 2)}``.

    Values are Python literals; one that is not (``act_layer=gelu``) stays a string, as fvcore reads config values.
    """
    kwargs = {}
    for entry in entries:
        name, sep, value = str(entry).partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise ValueError(f"MODEL.BACKBONE.TIMM.KWARGS: each entry must be 'name=value', got {entry!r}")
        try:
            kwargs[name] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            kwargs[name] = value.strip()
    return kwargs


def create_features_model(name: str, out_indices: Sequence[int], model_kwargs: dict[str, Any]) -> nn.Module:
    """``timm.create_model(name, features_only=True, out_indices=..., pretrained=False, **model_kwargs)``,
    with errors that name the model and say what was expected."""
    timm = import_timm()
    if not timm.is_model(name):
        # names like "hf-hub:..." load a config from the hub: refused here like any unknown name
        close = difflib.get_close_matches(name.split(".")[0], timm.list_models(), n=3)
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise ValueError(f"MODEL.BACKBONE.TIMM.NAME: {name!r} is not a timm model name "
                         f"(timm.list_models() lists them){hint}")
    try:
        return timm.create_model(
            name, pretrained=False, features_only=True, out_indices=tuple(out_indices), **model_kwargs
        )
    except (AssertionError, IndexError, KeyError, RuntimeError, TypeError, ValueError) as e:
        raise ValueError(
            f"TimmBackbone: timm cannot build {name!r} with features_only=True, out_indices={tuple(out_indices)}, "
            f"KWARGS {model_kwargs}: {type(e).__name__}: {e}"
        ) from e


def timm_module_candidates(timm_name: str) -> tuple[str, ...]:
    """Where a module or tensor that timm names ``timm_name`` in the full model lives in its features_only form:
    unchanged, its first nn.Sequential level flattened ("stages.1" -> "stages_1"), or under "model."
    (timm's FeatureGetterNet wraps the whole model)."""
    return timm_name, timm_name.replace(".", "_", 1), f"model.{timm_name}"


def frozen_modules(body: nn.Module, last_frozen: str) -> tuple[list[str], list[str]]:
    """The modules computed up to and including ``last_frozen`` (and its submodules).

    timm's features_only models register modules in the order they run (FeatureListNet relies on it too),
    so these are the modules before ``last_frozen`` in ``named_modules()`` order, and its subtree.

    Returns:
        (every such module, whose own parameters freeze; the top-most ones whose whole subtree is among them,
        which are kept in eval mode). A container with later modules inside (the root, a FeatureGetterNet's
        "model") is in the first list only: its own parameters (e.g. a position embedding) run before.
    """
    names = [name for name, _ in body.named_modules()]
    end = names.index(last_frozen) + 1
    while end < len(names) and names[end].startswith(f"{last_frozen}."):
        end += 1
    region = names[:end]
    first_after = names[end] if end < len(names) else None

    def contains(outer: str, inner: str | None) -> bool:
        return inner is not None and (outer == "" or inner.startswith(f"{outer}."))

    whole = {name for name in region if not contains(name, first_after)}
    tops = [name for name in region if name in whole and (name == "" or name.rpartition(".")[0] not in whole)]
    return region, tops


@BACKBONE_REGISTRY.register()
class TimmBackbone(Backbone):
    """A timm ``features_only`` model returning the features at timm's ``out_indices``, finest first.

    Any input size: the images are zero-padded bottom/right to a multiple of ``size_divisibility``
    (the largest output stride: every stride-2 step then sees an even size, and a Swin input is a
    multiple of its patch size), and each output of stride s is cropped to (ceil(H / s), ceil(W / s))
    of the H x W input. That is the size ResNetBackbone gives and the one the detector's padding mask,
    interpolated from H x W, assumes; a timm model whose strided convolutions round down (ConvNeXt's
    4x4 stem) would otherwise lose a row of the image at every level.

    Frozen stages: timm features ``0 .. frozen_stages - 1`` and every module computed before them get
    ``requires_grad=False`` and are kept in eval mode by ``train()``, so a frozen stage is a fixed
    function: its batch-norm statistics do not move, and its dropout and drop-path are off. With
    ``freeze_bn`` every BatchNorm of the model becomes a FrozenBatchNorm2d (fixed statistics and affine,
    as the official ResNet backbone), whatever stage it is in.
    """

    def __init__(
        self,
        name: str = "resnet50",
        out_indices: Sequence[int] = (-3, -2, -1),
        frozen_stages: int = 0,
        freeze_bn: bool = True,
        model_kwargs: dict[str, Any] | None = None,
        pretrained: str | None = None,
    ):
        """
        Args:
            name: a timm model name (``timm.list_models()``), e.g. "convnext_tiny".
            out_indices: timm feature indices returned, increasing (finest first); negative count from the end.
            frozen_stages: how many timm features (from index 0) are frozen, with everything before them;
                0 trains all. For timm ResNets feature 0 is the stem (2: stem and layer1, as the official);
                for ConvNeXt and Swin it is the first stage (1: stem and stage 0).
            freeze_bn: turn every BatchNorm into a FrozenBatchNorm2d, after loading ``pretrained``. Meant for
                pretrained weights: random statistics would stay as they are, and so would the zero weight
                timm gives the last BatchNorm of each ResNet block (``zero_init_last=False`` avoids it).
            model_kwargs: more keyword arguments of ``timm.create_model`` (e.g. ``dynamic_img_size=True``
                for Swin, which otherwise takes only 224 x 224 images, or ``drop_path_rate``).
            pretrained: path of a local file with the weights of timm model ``name`` (what
                ``timm.create_model(name).state_dict()`` holds, .pth/.bin or .safetensors), or None.
        """
        super().__init__()
        model_kwargs = dict(model_kwargs or {})
        self.name = name
        self.body = create_features_model(name, out_indices, model_kwargs)
        feature_info = self.body.feature_info
        indices = [index % len(feature_info) for index in feature_info.out_indices]
        if not indices or any(a >= b for a, b in zip(indices, indices[1:])):
            raise ValueError(f"MODEL.BACKBONE.TIMM.OUT_INDICES must be increasing timm feature indices (finest "
                             f"first), got {list(out_indices)} (indices {indices} of {name}'s {len(feature_info)})")
        self._check_input_size(model_kwargs)
        self._output_shape = {
            feature_info.module_name(index).replace(".", "_"): ShapeSpec(
                channels=feature_info.channels(index), stride=feature_info.reduction(index)
            )
            for index in indices
        }
        self.size_divisibility = max(spec.stride for spec in self._output_shape.values())
        # Swin and other timm transformers return (B, H, W, C) maps
        self._channels_last_output = getattr(self.body, "output_fmt", "NCHW") == "NHWC"
        if pretrained:
            self.load_pretrained(pretrained)
        if freeze_bn:
            self.body = import_timm().layers.freeze_batch_norm_2d(self.body)
        self._eval_modules = self._freeze(frozen_stages, indices[-1])

    def _check_input_size(self, model_kwargs: dict[str, Any]) -> None:
        pretrained_cfg = getattr(self.body, "pretrained_cfg", None) or {}
        dynamic = model_kwargs.get("dynamic_img_size") or model_kwargs.get("strict_img_size") is False
        if pretrained_cfg.get("fixed_input_size") and not dynamic:
            _, height, width = pretrained_cfg.get("input_size", (3, 224, 224))
            raise ValueError(
                f"TimmBackbone: timm model {self.name!r} takes only {height}x{width} images, "
                "and detection needs any size: add 'dynamic_img_size=True' to MODEL.BACKBONE.TIMM.KWARGS "
                "(timm's Swin and ViT models support it)"
            )

    def _freeze(self, frozen_stages: int, last_index: int) -> list[str]:
        """Freeze timm features ``0 .. frozen_stages - 1``; returns the modules to keep in eval mode."""
        if not 0 <= frozen_stages <= last_index + 1:
            raise ValueError(f"MODEL.BACKBONE.TIMM.FROZEN_STAGES must be 0 to {last_index + 1} (the features up "
                             f"to the last of OUT_INDICES, {last_index}), got {frozen_stages}")
        if frozen_stages == 0:
            return []
        timm_name = self.body.feature_info.module_name(frozen_stages - 1)
        modules = dict(self.body.named_modules())
        found = [name for name in timm_module_candidates(timm_name) if name in modules]
        if not found:
            raise ValueError(f"TimmBackbone: cannot find module {timm_name!r} (timm feature {frozen_stages - 1}) "
                             f"of {self.name!r} to freeze FROZEN_STAGES {frozen_stages}")
        region, eval_modules = frozen_modules(self.body, found[0])
        for module_name in region:
            for parameter in modules[module_name].parameters(recurse=False):
                parameter.requires_grad_(False)
        return eval_modules

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        timm_cfg = cfg.MODEL.BACKBONE.TIMM
        return {
            "name": timm_cfg.NAME,
            "out_indices": list(timm_cfg.OUT_INDICES),
            "frozen_stages": timm_cfg.FROZEN_STAGES,
            "freeze_bn": timm_cfg.FREEZE_BN,
            "model_kwargs": parse_model_kwargs(timm_cfg.KWARGS),
            "pretrained": cfg.MODEL.BACKBONE.PRETRAINED or None,
        }

    def train(self, mode: bool = True) -> "TimmBackbone":
        super().train(mode)
        for name in self._eval_modules:
            self.body.get_submodule(name).eval()
        return self

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images (B, 3, H, W) normalised -> {name: (B, C, ceil(H / stride), ceil(W / stride))} contiguous."""
        height, width = images.shape[-2:]
        pad_bottom, pad_right = -height % self.size_divisibility, -width % self.size_divisibility
        if pad_bottom or pad_right:
            # zeros, as the detector pads a batch (the mean colour after normalisation)
            images = F.pad(images, (0, pad_right, 0, pad_bottom))
        features = {}
        for (name, spec), feature in zip(self._output_shape.items(), self.body(images), strict=True):
            if self._channels_last_output:
                feature = feature.permute(0, 3, 1, 2)
            size = (math.ceil(height / spec.stride), math.ceil(width / spec.stride))
            if feature.shape[-2] < size[0] or feature.shape[-1] < size[1]:
                raise RuntimeError(
                    f"TimmBackbone: {self.name} feature {name!r} (stride {spec.stride}) is "
                    f"{tuple(feature.shape[-2:])} for a {tuple(images.shape[-2:])} input, expected at least {size}"
                )
            # contiguous: the CPU GroupNorm of the input projections differs on channels-last maps (resnet.py)
            features[name] = feature[..., : size[0], : size[1]].contiguous()
        return features

    def output_shape(self) -> dict[str, ShapeSpec]:
        return dict(self._output_shape)

    def load_pretrained(self, path: str) -> tuple[list[str], list[str]]:
        """Load the weights of timm model ``name`` from the local file ``path`` (``read_state_dict``).

        Tensors are matched by their name in the full timm model or in its features_only form; those of
        modules features_only drops (the classifier, stages after the last output) are unused.

        Returns:
            ``(missing_keys, unexpected_keys)`` of ``load_state_dict`` (unexpected: the file's names).

        Raises:
            ValueError: no tensor of the file belongs to this model (weights of another architecture).
            RuntimeError: a tensor has another shape than the model's (another width or depth).
        """
        state_dict = read_state_dict(path, "TimmBackbone")
        own_keys = set(self.body.state_dict())
        mapped, unused = {}, []
        for key, tensor in state_dict.items():
            target = next((name for name in timm_module_candidates(key) if name in own_keys), None)
            if target is None:
                unused.append(key)
            else:
                mapped[target] = tensor
        if not mapped:
            raise ValueError(f"TimmBackbone: none of the {len(state_dict)} tensors in {path} belongs to timm model "
                             f"{self.name!r} (first names: {', '.join(list(state_dict)[:3])})")
        incompatible = load_weights(self.body, mapped, path, "TimmBackbone", f"timm model {self.name!r}")
        if unused:
            by_module = Counter(key.split(".", 1)[0] for key in unused)
            logger.info("Backbone weights %s: %d tensors unused (not in %s's features_only model): %s", path,
                        len(unused), self.name, ", ".join(f"{module} ({count})" for module, count in by_module.items()))
        return incompatible.missing_keys, unused
