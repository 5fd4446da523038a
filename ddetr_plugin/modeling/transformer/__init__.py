"""The deformable transformer: MSDeformAttn, encoder, decoder, two-stage proposals, their layers."""
from .box_coding import apply_box_delta, inverse_sigmoid
from .decoder import DecoderOutput, DeformableTransformerDecoder, DeformableTransformerDecoderLayer
from .deformable_transformer import DecoderQueries, DeformableTransformer, FlatLevels, TransformerOutput
from .encoder import DeformableTransformerEncoder, DeformableTransformerEncoderLayer, encoder_reference_points
from .linear import Linear
from .mlp import MLP, get_activation
from .ms_deform_attn import MSDeformAttn
from .two_stage import encoder_output_proposals, proposal_pos_embed

__all__ = [
    "MLP",
    "DecoderOutput",
    "DecoderQueries",
    "DeformableTransformer",
    "DeformableTransformerDecoder",
    "DeformableTransformerDecoderLayer",
    "DeformableTransformerEncoder",
    "DeformableTransformerEncoderLayer",
    "FlatLevels",
    "Linear",
    "MSDeformAttn",
    "TransformerOutput",
    "apply_box_delta",
    "encoder_output_proposals",
    "encoder_reference_points",
    "get_activation",
    "inverse_sigmoid",
    "proposal_pos_embed",
]
