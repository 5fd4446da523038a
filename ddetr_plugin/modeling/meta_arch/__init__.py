"""Meta-architectures: whole detectors built from a config, and ``build_model``."""
from .build import build_model
from .deformable_detr import DeformableDETR, build_input_proj

__all__ = ["DeformableDETR", "build_input_proj", "build_model"]
