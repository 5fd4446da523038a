"""forward_raw(..., return_intermediates=True): documented shapes, the op's own tensors, the final output."""
import gc
import weakref

import pytest
import torch

import ddetr_plugin.modeling.transformer.ms_deform_attn as ms_deform_attn_module
from ddetr_plugin.modeling.transformer import apply_box_delta

from tests._support.detection_batches import detection_batch
from tests._support.tiny_models import DEC_LAYERS, NUM_CLASSES, NUM_QUERIES, tiny_model

HEADS, ENC_LAYERS, POINTS = 4, 1, 4  # META_ARCH_TINY: NHEADS 4, 1 encoder layer, 4 points


@pytest.fixture
def op_calls(monkeypatch):
    """Every call of the op by the attention modules: (sampling_locations, attention_weights)."""
    calls = []
    op = ms_deform_attn_module.multi_scale_deformable_attention

    def spy(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, **kwargs):
        calls.append((sampling_locations, attention_weights))
        return op(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, **kwargs)

    monkeypatch.setattr(ms_deform_attn_module, "multi_scale_deformable_attention", spy)
    return calls


@pytest.mark.parametrize("variant", ["plain", "two_stage"])
def test_shapes_the_ops_tensors_and_the_final_output(variant, op_calls):
    model = tiny_model(variant).eval()
    images, padding_mask, _ = model.preprocess_images(detection_batch(with_targets=False))
    with torch.no_grad():
        plain = model.forward_raw(images, padding_mask)
        op_calls.clear()
        outputs = model.forward_raw(images, padding_mask, return_intermediates=True)
    assert "intermediates" not in plain
    torch.testing.assert_close(outputs["pred_logits"], plain["pred_logits"], rtol=0, atol=0)
    inter = outputs["intermediates"]

    batch, levels = 2, 4
    shapes = inter["spatial_shapes"].tolist()
    positions = sum(h * w for h, w in shapes)
    assert shapes == [[8, 12], [4, 6], [2, 3], [1, 2]]  # the 64x96 batch at strides 8..64
    assert inter["level_start_index"].tolist() == [0, 96, 120, 126]
    assert inter["valid_ratios"].shape == (batch, levels, 2)
    assert len(inter["encoder"]) == ENC_LAYERS and len(inter["decoder"]) == DEC_LAYERS
    for layer in inter["encoder"]:
        assert layer["sampling_locations"].shape == (batch, positions, HEADS, levels, POINTS, 2)
        assert layer["attention_weights"].shape == (batch, positions, HEADS, levels, POINTS)
    box = 4 if variant == "two_stage" else 2
    for layer in inter["decoder"]:
        assert layer["hidden_states"].shape == (batch, NUM_QUERIES, 32)
        assert layer["reference_points"].shape == (batch, NUM_QUERIES, box)
        assert layer["sampling_locations"].shape == (batch, NUM_QUERIES, HEADS, levels, POINTS, 2)
        assert layer["attention_weights"].shape == (batch, NUM_QUERIES, HEADS, levels, POINTS)
        # a softmax over each head's levels and points
        torch.testing.assert_close(layer["attention_weights"].sum((-1, -2)), torch.ones(batch, NUM_QUERIES, HEADS))

    # the very tensors the op consumed, in layer order: encoder layers, then decoder layers
    recorded = inter["encoder"] + inter["decoder"]
    assert len(op_calls) == len(recorded)
    for (locations, weights), layer in zip(op_calls, recorded):
        assert locations is layer["sampling_locations"] and weights is layer["attention_weights"]

    # the heads on each layer's hidden states and references give that layer's predictions
    predictions = outputs["aux_outputs"] + [{"pred_logits": outputs["pred_logits"], "pred_boxes": outputs["pred_boxes"]}]
    with torch.no_grad():
        for index, (layer, expected) in enumerate(zip(inter["decoder"], predictions)):
            logits = model.class_embed[index](layer["hidden_states"])
            boxes = apply_box_delta(model.bbox_embed[index](layer["hidden_states"]), layer["reference_points"])
            torch.testing.assert_close(logits, expected["pred_logits"], rtol=0, atol=0)
            torch.testing.assert_close(boxes, expected["pred_boxes"], rtol=0, atol=0)
    assert outputs["pred_logits"].shape[-1] == NUM_CLASSES


def test_the_default_call_keeps_no_sampling_tensor(op_calls):
    model = tiny_model("plain").eval()
    images, padding_mask, _ = model.preprocess_images(detection_batch(with_targets=False))
    with torch.no_grad():
        outputs = model.forward_raw(images, padding_mask)
    assert set(outputs) == {"pred_logits", "pred_boxes", "aux_outputs", "enc_outputs"}
    alive = [weakref.ref(tensor) for call in op_calls for tensor in call]
    op_calls.clear()
    gc.collect()
    # once the spy lets go, nothing (no module, no output) holds the locations or weights
    assert alive and all(ref() is None for ref in alive)
