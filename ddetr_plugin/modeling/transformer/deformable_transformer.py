"""The deformable transformer: multi-level features in, decoder states out.

It implements the stages of ``DetectionTransformer`` (interface.py), whose ``forward`` runs them:
``flatten`` (levels -> one sequence, valid ratios) -> ``encode`` -> ``select_queries`` (learned
queries, or two-stage proposals from the memory) -> ``decode``.
"""
from typing import Optional, Sequence

import torch
from torch import nn

from ddetr_plugin.registry import TRANSFORMER_REGISTRY

from .decoder import DecoderOutput, DeformableTransformerDecoder, DeformableTransformerDecoderLayer
from .encoder import DeformableTransformerEncoder, DeformableTransformerEncoderLayer
from .interface import DecoderQueries, DetectionTransformer, FlatLevels
from .ms_deform_attn import MSDeformAttn
from .two_stage import encoder_output_proposals, proposal_pos_embed


def _index_tensor(values: list, device: torch.device) -> torch.Tensor:
    # built on the host and copied without waiting for the device queue
    return torch.tensor(values, dtype=torch.long).to(device, non_blocking=True)


@TRANSFORMER_REGISTRY.register()
class DeformableTransformer(DetectionTransformer):
    """Encoder and decoder of Deformable DETR with explicit arguments.

    Parameters are named as in the official checkpoints (``level_embed``,
    ``encoder.layers.i.*``, ``decoder.layers.i.*``, ``reference_points`` for
    one-stage, ``enc_output``/``enc_output_norm``/``pos_trans``/``pos_trans_norm``
    for two-stage). The prediction heads are not owned here: box refinement and
    two-stage proposals use the detector's heads, passed to ``forward``.

    Args:
        d_model: channels C.
        num_heads: attention heads M.
        num_encoder_layers, num_decoder_layers: depths.
        dim_feedforward: FFN hidden size.
        dropout: dropout probability.
        activation: FFN activation ("relu" or "gelu").
        num_feature_levels: L.
        enc_num_points, dec_num_points: sampling points per head and level.
        two_stage: queries from encoder proposals instead of learned embeddings (as many
            kept as the detector has queries).
        backend: of the deformable attention op ("auto", "native", "triton", "pytorch").
    """

    def __init__(
        self,
        d_model: int = 256,
        num_heads: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 1024,
        dropout: float = 0.1,
        activation: str = "relu",
        num_feature_levels: int = 4,
        enc_num_points: int = 4,
        dec_num_points: int = 4,
        two_stage: bool = False,
        backend: str = "auto",
    ):
        super().__init__(d_model, num_feature_levels, num_decoder_layers, two_stage)
        self.num_heads = num_heads
        encoder_layer = DeformableTransformerEncoderLayer(
            d_model, dim_feedforward, dropout, activation, num_feature_levels, num_heads, enc_num_points, backend
        )
        self.encoder = DeformableTransformerEncoder(encoder_layer, num_encoder_layers)
        decoder_layer = DeformableTransformerDecoderLayer(
            d_model, dim_feedforward, dropout, activation, num_feature_levels, num_heads, dec_num_points, backend
        )
        self.decoder = DeformableTransformerDecoder(decoder_layer, num_decoder_layers)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        if two_stage:
            self.enc_output = nn.Linear(d_model, d_model)
            self.enc_output_norm = nn.LayerNorm(d_model)
            self.pos_trans = nn.Linear(d_model * 2, d_model * 2)
            self.pos_trans_norm = nn.LayerNorm(d_model * 2)
        else:
            self.reference_points = nn.Linear(d_model, 2)
        self.reset_parameters()

    @classmethod
    def from_config(cls, cfg) -> dict:
        t = cfg.MODEL.TRANSFORMER
        return dict(
            d_model=t.D_MODEL,
            num_heads=t.NHEADS,
            num_encoder_layers=t.ENC_LAYERS,
            num_decoder_layers=t.DEC_LAYERS,
            dim_feedforward=t.DIM_FEEDFORWARD,
            dropout=t.DROPOUT,
            activation=t.ACTIVATION,
            num_feature_levels=cfg.MODEL.NUM_FEATURE_LEVELS,
            enc_num_points=t.ENC_N_POINTS,
            dec_num_points=t.DEC_N_POINTS,
            two_stage=cfg.MODEL.TWO_STAGE,
            backend=t.MSDA_BACKEND,
        )

    def reset_parameters(self) -> None:
        """The official initialisation: xavier for every matrix, then the deformable
        attention's own scheme, a xavier/zero ``reference_points`` and a normal ``level_embed``."""
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)
        for module in self.modules():
            if isinstance(module, MSDeformAttn):
                module.reset_parameters()
        if not self.two_stage:
            nn.init.xavier_uniform_(self.reference_points.weight, gain=1.0)
            nn.init.zeros_(self.reference_points.bias)
        nn.init.normal_(self.level_embed)

    def flatten(
        self, srcs: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], pos_embeds: Sequence[torch.Tensor]
    ) -> FlatLevels:
        """Flatten the levels into one sequence and measure their valid regions.

        Args:
            srcs: L tensors (N, C, H_l, W_l), the projected features.
            masks: L tensors (N, H_l, W_l) bool, True on padding.
            pos_embeds: L tensors (N, C, H_l, W_l), position encodings.
        """
        if not len(srcs) == len(masks) == len(pos_embeds) == self.num_feature_levels:
            raise ValueError(
                f"DeformableTransformer expects {self.num_feature_levels} levels of features, masks and "
                f"position encodings, got {len(srcs)}, {len(masks)}, {len(pos_embeds)}"
            )
        shapes = [(src.shape[-2], src.shape[-1]) for src in srcs]
        src_flat = torch.cat([src.flatten(2).transpose(1, 2) for src in srcs], dim=1)
        pos_flat = torch.cat(
            [
                pos.flatten(2).transpose(1, 2) + self.level_embed[level].view(1, 1, -1)
                for level, pos in enumerate(pos_embeds)
            ],
            dim=1,
        )
        mask_flat = torch.cat([mask.flatten(1) for mask in masks], dim=1)
        # padding is bottom/right: valid columns are counted along the first row, valid rows down the first column
        valid_widths = [(~mask[:, 0, :]).sum(1) for mask in masks]
        valid_heights = [(~mask[:, :, 0]).sum(1) for mask in masks]
        valid_sizes = torch.stack([torch.stack(wh, dim=-1) for wh in zip(valid_widths, valid_heights)], dim=1)
        valid_ratios = torch.stack(
            [
                torch.stack([w.float() / width, h.float() / height], dim=-1)
                for w, h, (height, width) in zip(valid_widths, valid_heights, shapes)
            ],
            dim=1,
        )
        starts = [0]
        for height, width in shapes[:-1]:
            starts.append(starts[-1] + height * width)
        return FlatLevels(
            src=src_flat,
            pos=pos_flat,
            padding_mask=mask_flat,
            spatial_shapes=_index_tensor([list(shape) for shape in shapes], src_flat.device),
            level_start_index=_index_tensor(starts, src_flat.device),
            valid_ratios=valid_ratios,
            valid_sizes=valid_sizes,
            shapes=shapes,
        )

    def encode(self, levels: FlatLevels, record: Optional[list] = None) -> torch.Tensor:
        """The encoder memory (N, S, C); ``record``: see ``DeformableTransformerEncoder``."""
        return self.encoder(
            levels.src,
            levels.pos,
            levels.spatial_shapes,
            levels.level_start_index,
            levels.valid_ratios,
            levels.padding_mask,
            shapes=levels.shapes,
            record=record,
        )

    def select_queries(self, memory: torch.Tensor, levels: FlatLevels, num_queries: int,
                       query_embed: Optional[torch.Tensor] = None, proposal_class_head: Optional[nn.Module] = None,
                       proposal_box_head: Optional[nn.Module] = None) -> DecoderQueries:
        """Initial queries and references for the decoder.

        One-stage: ``query_embed`` (Q, 2C) is split into positions and contents; the
        reference points are ``sigmoid(reference_points(position))``.
        Two-stage: the proposal heads score and refine every encoder position's
        proposal; the top ``num_queries`` by their first class logit give the
        reference boxes (detached) and, through ``pos_trans``, the queries.
        """
        batch, _, channels = memory.shape
        if not self.two_stage:
            if query_embed is None:
                raise ValueError("one-stage DeformableTransformer needs query_embed (Q, 2 * d_model)")
            if query_embed.shape[0] != num_queries:
                raise ValueError(f"one-stage DeformableTransformer: query_embed has {query_embed.shape[0]} rows, "
                                 f"expected num_queries = {num_queries}")
            query_pos, target = torch.split(query_embed, channels, dim=1)
            query_pos = query_pos.unsqueeze(0).expand(batch, -1, -1)
            target = target.unsqueeze(0).expand(batch, -1, -1)
            return DecoderQueries(target, query_pos, self.reference_points(query_pos).sigmoid(), None, None)
        if proposal_class_head is None or proposal_box_head is None:
            raise ValueError("two-stage DeformableTransformer needs proposal_class_head and proposal_box_head")
        num_positions = sum(height * width for height, width in levels.shapes)
        if num_positions < num_queries:
            raise ValueError(
                f"two-stage: the feature levels {levels.shapes} have {num_positions} positions, fewer than the "
                f"{num_queries} proposals to keep (MODEL.NUM_QUERIES); use larger images"
            )
        output_memory, proposals = encoder_output_proposals(
            memory, levels.padding_mask, levels.shapes, levels.valid_sizes
        )
        output_memory = self.enc_output_norm(self.enc_output(output_memory))
        enc_outputs_class = proposal_class_head(output_memory)
        enc_outputs_coord_unact = proposal_box_head(output_memory) + proposals
        top = torch.topk(enc_outputs_class[..., 0], num_queries, dim=1).indices
        top_coords_unact = torch.gather(enc_outputs_coord_unact, 1, top.unsqueeze(-1).expand(-1, -1, 4)).detach()
        embedded = self.pos_trans_norm(self.pos_trans(proposal_pos_embed(top_coords_unact, channels // 2)))
        query_pos, target = torch.split(embedded, channels, dim=2)
        return DecoderQueries(
            target, query_pos, top_coords_unact.sigmoid(), enc_outputs_class, enc_outputs_coord_unact
        )

    def decode(self, queries: DecoderQueries, memory: torch.Tensor, levels: FlatLevels,
               bbox_embed: Optional[Sequence[nn.Module]] = None, record: Optional[list] = None) -> DecoderOutput:
        """Run the decoder; ``bbox_embed`` (one head per layer) enables box refinement; ``record``:
        see ``DeformableTransformerDecoder``."""
        return self.decoder(
            queries.target,
            queries.query_pos,
            queries.reference_points,
            memory,
            levels.spatial_shapes,
            levels.level_start_index,
            levels.valid_ratios,
            levels.padding_mask,
            bbox_embed=bbox_embed,
            record=record,
        )
