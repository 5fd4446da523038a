"""What ``DeformableDETR`` asks of its transformer: four stages, four attributes, one orchestration.

A transformer registered in ``TRANSFORMER_REGISTRY`` (chosen by ``MODEL.TRANSFORMER.NAME``) subclasses
``DetectionTransformer``, passes the attributes to its ``__init__`` and implements the stages:

``flatten`` (levels -> one sequence) -> ``encode`` -> ``select_queries`` (learned queries, or two-stage
proposals from the memory) -> ``decode``. ``forward`` runs them in that order; the detector calls it
and owns the prediction heads, which it passes in (box refinement, two-stage proposal scoring).

Shapes: N images, L levels of H_l x W_l, S = sum of H_l * W_l positions, C = ``d_model`` channels,
Q queries, D decoder layers, K classes.
"""
from abc import ABC, abstractmethod
from typing import NamedTuple, Optional, Sequence

import torch
from torch import nn

from .decoder import DecoderOutput


class FlatLevels(NamedTuple):
    """All feature levels as one sequence of S positions.

    src: (N, S, C) features; pos: (N, S, C) position + level embeddings;
    padding_mask: (N, S) bool, True on padding; spatial_shapes: (L, 2) int64 (H_l, W_l);
    level_start_index: (L,) int64; valid_ratios: (N, L, 2) valid fraction (w, h);
    valid_sizes: (N, L, 2) valid columns and rows (w, h); shapes: the (H_l, W_l) as Python ints.
    """

    src: torch.Tensor
    pos: torch.Tensor
    padding_mask: torch.Tensor
    spatial_shapes: torch.Tensor
    level_start_index: torch.Tensor
    valid_ratios: torch.Tensor
    valid_sizes: torch.Tensor
    shapes: list[tuple[int, int]]


class DecoderQueries(NamedTuple):
    """The decoder's starting point.

    target: (N, Q, C) query contents; query_pos: (N, Q, C) query positions;
    reference_points: (N, Q, 2) points (one-stage) or (N, Q, 4) boxes (two-stage), in [0, 1];
    enc_outputs_class: (N, S, K) two-stage proposal logits, else None;
    enc_outputs_coord_unact: (N, S, 4) two-stage proposal boxes before the sigmoid, else None.
    """

    target: torch.Tensor
    query_pos: torch.Tensor
    reference_points: torch.Tensor
    enc_outputs_class: Optional[torch.Tensor]
    enc_outputs_coord_unact: Optional[torch.Tensor]


class TransformerOutput(NamedTuple):
    """hidden_states: (D, N, Q, C); reference_points: D tensors (N, Q, 2|4), layer l's reference;
    enc_outputs_class / enc_outputs_coord_unact: as in ``DecoderQueries``; levels: the flattened
    levels the layers attended over."""

    hidden_states: torch.Tensor
    reference_points: list[torch.Tensor]
    enc_outputs_class: Optional[torch.Tensor]
    enc_outputs_coord_unact: Optional[torch.Tensor]
    levels: FlatLevels


class DetectionTransformer(nn.Module, ABC):
    """Base of the transformers a ``DeformableDETR`` drives.

    Attributes (read by the detector to build its projections, queries and heads):
        d_model: channels C of features, queries and decoder states.
        num_feature_levels: L, the levels ``flatten`` expects.
        num_decoder_layers: D, the layers ``decode`` returns (one class and box head each).
        two_stage: queries from encoder proposals (the detector then passes proposal heads, and
            builds no learned query embedding).
    """

    def __init__(self, d_model: int, num_feature_levels: int, num_decoder_layers: int, two_stage: bool):
        super().__init__()
        self.d_model = d_model
        self.num_feature_levels = num_feature_levels
        self.num_decoder_layers = num_decoder_layers
        self.two_stage = two_stage

    @abstractmethod
    def flatten(
        self, srcs: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], pos_embeds: Sequence[torch.Tensor]
    ) -> FlatLevels:
        """The levels as one sequence.

        Args:
            srcs: L tensors (N, C, H_l, W_l), the projected features, finest first.
            masks: L tensors (N, H_l, W_l) bool, True on padding (bottom/right).
            pos_embeds: L tensors (N, C, H_l, W_l), position encodings.
        """

    @abstractmethod
    def encode(self, levels: FlatLevels, record: Optional[list] = None) -> torch.Tensor:
        """The encoder memory (N, S, C). ``record``: when a list, one dict per layer
        {"sampling_locations" (N, S, M, L, P, 2), "attention_weights" (N, S, M, L, P)} is appended."""

    @abstractmethod
    def select_queries(
        self,
        memory: torch.Tensor,
        levels: FlatLevels,
        num_queries: int,
        query_embed: Optional[torch.Tensor] = None,
        proposal_class_head: Optional[nn.Module] = None,
        proposal_box_head: Optional[nn.Module] = None,
    ) -> DecoderQueries:
        """Q = ``num_queries`` initial queries and references.

        Args:
            memory: (N, S, C) encoder output.
            levels: from ``flatten``.
            num_queries: Q; with two-stage, the proposals kept.
            query_embed: (Q, 2C) learned queries (one-stage), else None.
            proposal_class_head: (N, S, C) -> (N, S, K) (two-stage), else None.
            proposal_box_head: (N, S, C) -> (N, S, 4) box deltas (two-stage), else None.
        """

    @abstractmethod
    def decode(
        self,
        queries: DecoderQueries,
        memory: torch.Tensor,
        levels: FlatLevels,
        bbox_embed: Optional[Sequence[nn.Module]] = None,
        record: Optional[list] = None,
    ) -> DecoderOutput:
        """The D decoder layers' states and references. ``bbox_embed``: one head (N, Q, C) -> (N, Q, 4)
        per layer for iterative box refinement, or None; ``record``: as in ``encode``, one dict per layer
        with Q queries."""

    def forward(
        self,
        srcs: Sequence[torch.Tensor],
        masks: Sequence[torch.Tensor],
        pos_embeds: Sequence[torch.Tensor],
        num_queries: int,
        query_embed: Optional[torch.Tensor] = None,
        bbox_embed: Optional[Sequence[nn.Module]] = None,
        proposal_class_head: Optional[nn.Module] = None,
        proposal_box_head: Optional[nn.Module] = None,
        encoder_record: Optional[list] = None,
        decoder_record: Optional[list] = None,
    ) -> TransformerOutput:
        """All stages, in order; the arguments are those of the stages."""
        levels = self.flatten(srcs, masks, pos_embeds)
        memory = self.encode(levels, record=encoder_record)
        queries = self.select_queries(memory, levels, num_queries, query_embed, proposal_class_head, proposal_box_head)
        decoded = self.decode(queries, memory, levels, bbox_embed, record=decoder_record)
        return TransformerOutput(
            decoded.hidden_states, decoded.reference_points, queries.enc_outputs_class,
            queries.enc_outputs_coord_unact, levels,
        )
