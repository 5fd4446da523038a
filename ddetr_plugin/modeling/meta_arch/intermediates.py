"""What ``DeformableDETR.forward_raw(..., return_intermediates=True)`` adds under "intermediates".

The tensors are the ones the forward pass computed (no copies): the decoder's per-layer
states and references, and, per encoder and decoder layer, the sampling locations and
attention weights the deformable attention op consumed. With the level geometry alongside,
a sampling location maps to image pixels (``ddetr_plugin.utils.attention``).
"""
from typing import Any

from ..transformer import TransformerOutput


def collect_intermediates(
    transformed: TransformerOutput, encoder_sampling: list[dict], decoder_sampling: list[dict]
) -> dict[str, Any]:
    """The "intermediates" entry.

    Args:
        transformed: the transformer's output (decoder states and references, the flattened levels).
        encoder_sampling, decoder_sampling: one dict per layer, as ``MSDeformAttn`` records them.

    Returns:
        "encoder": E dicts {"sampling_locations" (B, S, M, L, P, 2), "attention_weights" (B, S, M, L, P)}:
            query s of the encoder is position s of the flattened levels;
        "decoder": D dicts {"hidden_states" (B, Q, C) the layer's output, "reference_points" (B, Q, 2)
            points or (B, Q, 4) boxes, normalized to the valid image, that the layer attended around and
            its box head predicts relative to, "sampling_locations" (B, Q, M, L, P, 2),
            "attention_weights" (B, Q, M, L, P)};
        "spatial_shapes" (L, 2) int64 rows (H_l, W_l); "level_start_index" (L,) int64;
        "valid_ratios" (B, L, 2) the unpadded fraction (w, h) of each level.
        Sampling locations are (x, y) normalized to each padded level, as the op reads them.
    """
    if len(decoder_sampling) != len(transformed.reference_points):
        raise RuntimeError(
            f"the decoder recorded {len(decoder_sampling)} attention samplings for "
            f"{len(transformed.reference_points)} layers"
        )
    levels = transformed.levels
    decoder = [
        {"hidden_states": hidden, "reference_points": reference, **sampling}
        for hidden, reference, sampling in zip(
            transformed.hidden_states, transformed.reference_points, decoder_sampling
        )
    ]
    return {
        "encoder": list(encoder_sampling),
        "decoder": decoder,
        "spatial_shapes": levels.spatial_shapes,
        "level_start_index": levels.level_start_index,
        "valid_ratios": levels.valid_ratios,
    }
