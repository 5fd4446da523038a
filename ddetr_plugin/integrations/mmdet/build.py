"""Our DeformableDETR from mmdet's DeformableDETR config fields, or from one of our YAML files.

mmdet fields: every field maps to our components (``ddetr_plugin.config.mmdet_model``); the
backbone is built by mmdet's registry (any mmdet backbone) and the neck, a ChannelMapper, is
our input projection (same convs and GroupNorm, bias or not as configured).
"""
from typing import Any, Mapping, Optional, Sequence, Tuple

from fvcore.common.config import CfgNode

from ddetr_plugin.config.dotted import config_with
from ddetr_plugin.config import load_config
from ddetr_plugin.config.mmdet_model import MODEL_FIELDS, MMDetConfigError, mmdet_model_settings
from ddetr_plugin.modeling.meta_arch import DeformableDETR
from ddetr_plugin.registry import build_from_key

from .backbone import MMDetBackbone


def build_from_mmdet_fields(fields: Mapping[str, Any], backbone: Mapping[str, Any]) -> Tuple[DeformableDETR, CfgNode]:
    """Our detector and the config values it was built from, for mmdet's model fields.

    Args:
        fields: the ``MODEL_FIELDS`` of an mmdet ``DeformableDETR`` config (neck, encoder, ...).
        backbone: its ``backbone`` config, built with mmdet's ``MODELS``.

    Raises:
        MMDetConfigError: a field that cannot be honoured (named).
    """
    unknown = sorted(set(fields) - set(MODEL_FIELDS))
    if unknown:
        raise MMDetConfigError(f"PluginDeformableDETR: model fields not supported: {', '.join(unknown)}")
    settings = mmdet_model_settings(fields)
    cfg = config_with(settings.values)
    detector = DeformableDETR(
        **DeformableDETR.from_config(cfg, backbone=MMDetBackbone.build(dict(backbone), settings.in_channels)),
        input_proj_bias=settings.neck_bias,
    )
    return detector, cfg


def build_from_ddetr_config(path: str, options: Optional[Sequence[Any]] = None) -> Tuple[DeformableDETR, CfgNode]:
    """Our detector as ``MODEL.META_ARCHITECTURE`` of the YAML ``path`` (+ KEY VALUE ``options``) builds it.

    Raises:
        TypeError: the meta-architecture is not a DeformableDETR.
    """
    cfg = load_config(path, list(options or ()))
    detector = build_from_key("MODEL.META_ARCHITECTURE", cfg)
    if not isinstance(detector, DeformableDETR):
        raise TypeError(f"{path}: MODEL.META_ARCHITECTURE {cfg.MODEL.META_ARCHITECTURE!r} is not a DeformableDETR")
    return detector, cfg
