"""Backbones: images (B, 3, H, W) -> named feature maps, with channels and strides in output_shape()."""
from .base import Backbone, ShapeSpec
from .resnet import ResNetBackbone
from .timm_backbone import TimmBackbone

__all__ = ["Backbone", "ResNetBackbone", "ShapeSpec", "TimmBackbone"]
