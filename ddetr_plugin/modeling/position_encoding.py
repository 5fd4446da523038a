"""Position encodings of a feature map, computed from its padding mask.

Both return ``num_pos_feats`` channels per axis, ``2 * num_pos_feats`` in all,
which must equal the transformer's d_model. Neither has checkpoint keys beyond
the learned tables (the official ``backbone.1`` has none).
"""
import math

import torch
from fvcore.common.config import CfgNode
from torch import nn

from ..registry import POSITION_ENCODING_REGISTRY

# keeps the normalisation finite for rows/columns that are entirely padding
_NORMALIZE_EPS = 1e-6


def _check_mask(mask: torch.Tensor) -> None:
    if mask.dim() != 3 or mask.dtype != torch.bool:
        raise ValueError(f"position encoding: mask must be (B, H, W) bool, got {tuple(mask.shape)} {mask.dtype}")


def _num_pos_feats_from_config(cfg: CfgNode) -> int:
    """Channels per axis: half of MODEL.TRANSFORMER.D_MODEL, so that the two axes fill the model width."""
    d_model = cfg.MODEL.TRANSFORMER.D_MODEL
    if d_model % 2:
        raise ValueError(f"MODEL.TRANSFORMER.D_MODEL ({d_model}) must be even: the position encoding gives each "
                         f"axis half of the channels")
    return d_model // 2


def _interleave_sin_cos(angles: torch.Tensor) -> torch.Tensor:
    """(..., F) angles -> (..., F): sin of the even channels and cos of the odd ones, interleaved."""
    return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=-1).flatten(-2)


@POSITION_ENCODING_REGISTRY.register()
class PositionEmbeddingSine(nn.Module):
    """Fixed sine/cosine encoding of the (y, x) position within the unpadded region (the official one).

    With ``normalize``, positions count only valid pixels and are scaled so each axis
    spans about [0, scale] over the valid region whatever the padding:
    ``(cumsum + offset) / (valid_length + 1e-6) * scale``. Channel pair (2i, 2i+1) holds
    sin and cos of ``position / temperature ** (2i / num_pos_feats)``.
    """

    def __init__(
        self,
        num_pos_feats: int = 128,
        temperature: float = 10000,
        normalize: bool = True,
        scale: float = 2 * math.pi,
        offset: float = -0.5,
    ):
        """
        Args:
            num_pos_feats: channels per axis (even); the output has twice as many.
            temperature: base of the geometric progression of wavelengths.
            normalize: scale positions to the valid region; without it ``scale`` and
                ``offset`` are unused and positions are raw pixel counts (1, 2, ...).
            scale: span of the normalised positions.
            offset: added to the 1-based counts before normalising (-0.5: pixel centres).
        """
        super().__init__()
        if num_pos_feats <= 0 or num_pos_feats % 2:
            raise ValueError(f"PositionEmbeddingSine: num_pos_feats must be positive and even, got {num_pos_feats}")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = scale
        self.offset = offset

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        encoding = cfg.MODEL.POSITION_ENCODING
        return {
            "num_pos_feats": _num_pos_feats_from_config(cfg),
            "temperature": encoding.TEMPERATURE,
            "normalize": encoding.NORMALIZE,
            "scale": encoding.SCALE,
            "offset": encoding.OFFSET,
        }

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        """mask (B, H, W) bool, True on padding -> (B, 2 * num_pos_feats, H, W) float32: (y channels, x channels)."""
        _check_mask(mask)
        not_mask = ~mask
        y_embed = not_mask.cumsum(1, dtype=torch.float32)
        x_embed = not_mask.cumsum(2, dtype=torch.float32)
        if self.normalize:
            # the last cumulative count is the valid length of each column / row
            y_embed = (y_embed + self.offset) / (y_embed[:, -1:, :] + _NORMALIZE_EPS) * self.scale
            x_embed = (x_embed + self.offset) / (x_embed[:, :, -1:] + _NORMALIZE_EPS) * self.scale
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=mask.device)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats)
        pos_y = _interleave_sin_cos(y_embed[..., None] / dim_t)
        pos_x = _interleave_sin_cos(x_embed[..., None] / dim_t)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


@POSITION_ENCODING_REGISTRY.register()
class PositionEmbeddingLearned(nn.Module):
    """Learned absolute encoding: a row and a column embedding table (DETR's learned variant).

    Ignores padding: channels [0, F) are the column (x) embedding, [F, 2F) the row (y) one.
    Feature maps are limited to ``max_size`` rows and columns.
    """

    def __init__(self, num_pos_feats: int = 128, max_size: int = 50):
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.max_size = max_size
        self.row_embed = nn.Embedding(max_size, num_pos_feats)
        self.col_embed = nn.Embedding(max_size, num_pos_feats)
        nn.init.uniform_(self.row_embed.weight)
        nn.init.uniform_(self.col_embed.weight)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> dict:
        return {"num_pos_feats": _num_pos_feats_from_config(cfg)}

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        """mask (B, H, W) bool -> (B, 2 * num_pos_feats, H, W): (x channels, y channels)."""
        _check_mask(mask)
        batch, height, width = mask.shape
        if height > self.max_size or width > self.max_size:
            raise ValueError(f"PositionEmbeddingLearned: feature map {height}x{width} exceeds the learned "
                             f"table of {self.max_size} rows and columns")
        x_embed = self.col_embed.weight[:width]  # (W, F)
        y_embed = self.row_embed.weight[:height]  # (H, F)
        pos = torch.cat((
            x_embed[None, :, :].expand(height, width, self.num_pos_feats),
            y_embed[:, None, :].expand(height, width, self.num_pos_feats),
        ), dim=-1)
        return pos.permute(2, 0, 1)[None].repeat(batch, 1, 1, 1)
