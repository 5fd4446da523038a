"""The deformable transformer: the interface a detector drives, MSDeformAttn, encoder, decoder, two-stage
proposals, their layers."""
from .box_coding import apply_box_delta, inverse_sigmoid
from .decoder import DecoderOutput, DeformableTransformerDecoder, DeformableTransformerDecoderLayer
from .deformable_transformer import DeformableTransformer
from .encoder import DeformableTransformerEncoder, DeformableTransformerEncoderLayer, encoder_reference_points
from .interface import DecoderQueries, DetectionTransformer, FlatLevels, TransformerOutput
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
    "DetectionTransformer",
    "FlatLevels",
    "MSDeformAttn",
    "TransformerOutput",
    "apply_box_delta",
    "encoder_output_proposals",
    "encoder_reference_points",
    "get_activation",
    "inverse_sigmoid",
    "proposal_pos_embed",
]
