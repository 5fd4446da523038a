"""Operators usable by any model: multi-scale deformable attention, seeded dropout, linear."""
from .ms_deform_attn import multi_scale_deformable_attention
from .native import native_available
from .onednn_linear import linear
from .reference import ms_deform_attn_pytorch
from .seeded_dropout import dropout

__all__ = ["multi_scale_deformable_attention", "native_available", "ms_deform_attn_pytorch", "dropout", "linear"]
