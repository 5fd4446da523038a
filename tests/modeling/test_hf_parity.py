"""Parity with HF transformers' DeformableDetrForObjectDetection on the same weights.

A randomly initialised HF model of each variant HF has, with every weight and buffer
perturbed (so a swapped or skipped tensor shows), is saved with ``save_pretrained``,
converted by tools/convert_checkpoint.py, and both models run on a padded batch of two:
outputs, per-term losses and post-processed detections agree. The reverse direction
(ours -> HF directory -> ``from_pretrained``) gives the same outputs too.
"""
import pytest
import torch

from ddetr_plugin.checkpoint.variant import save_state_dict
from ddetr_plugin.config import load_config
from ddetr_plugin.modeling import build_model

from tests._support.tool_scripts import load_tool

transformers = pytest.importorskip("transformers")
pytest.importorskip("timm")  # HF's ResNet backbone

NUM_LABELS, NUM_QUERIES, DEC_LAYERS = 7, 10, 2
HF_VARIANTS = {
    "plain": {},
    "box_refine": {"with_box_refine": True},
    "two_stage": {"with_box_refine": True, "two_stage": True},
    "single_scale": {"num_feature_levels": 1},
    "single_scale_learned": {"num_feature_levels": 1, "position_embedding_type": "learned"},
}
# the padded batch: image 1 is 48x64 inside 64x80
SIZES = [(64, 80), (48, 64)]
pytestmark = pytest.mark.usefixtures("single_thread")


def convert_checkpoint_main(argv):
    return load_tool("convert_checkpoint").main(argv)


def perturbed_hf_model(variant: str):
    torch.manual_seed(0)
    config = transformers.DeformableDetrConfig(
        backbone="resnet18", use_pretrained_backbone=False, d_model=32, encoder_layers=1, decoder_layers=DEC_LAYERS,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48,
        encoder_n_points=2, decoder_n_points=3, num_queries=NUM_QUERIES, two_stage_num_proposals=NUM_QUERIES,
        num_labels=NUM_LABELS, auxiliary_loss=True, dropout=0.0,
        # HF's matcher costs and loss coefficients, all different from the official ones
        class_cost=3, bbox_cost=4, giou_cost=1, bbox_loss_coefficient=3, giou_loss_coefficient=4,
        **HF_VARIANTS[variant])
    model = transformers.DeformableDetrForObjectDetection(config).eval()
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if not tensor.is_floating_point():
                continue
            if "running_var" in name:
                tensor.uniform_(0.5, 1.5)
            else:
                tensor.add_(torch.randn_like(tensor) * 0.05)
    return model


def padded_batch():
    torch.manual_seed(1)
    images = torch.randn(2, 3, *SIZES[0])
    padding_mask = torch.zeros(2, *SIZES[0], dtype=torch.bool)
    padding_mask[1, SIZES[1][0]:] = True
    padding_mask[1, :, SIZES[1][1]:] = True
    images[padding_mask.unsqueeze(1).expand_as(images)] = 0
    targets = [  # normalized cxcywh relative to each image
        {"labels": torch.tensor([3, 0]), "boxes": torch.tensor([[0.3, 0.4, 0.2, 0.3], [0.7, 0.6, 0.4, 0.5]])},
        {"labels": torch.tensor([6]), "boxes": torch.tensor([[0.5, 0.5, 0.6, 0.4]])},
    ]
    return images, padding_mask, targets


def assert_outputs_close(ours, hf_output, two_stage):
    torch.testing.assert_close(ours["pred_logits"], hf_output.logits, rtol=0, atol=2e-4)
    torch.testing.assert_close(ours["pred_boxes"], hf_output.pred_boxes, rtol=0, atol=2e-4)
    if two_stage:
        torch.testing.assert_close(ours["enc_outputs"]["pred_logits"], hf_output.enc_outputs_class, rtol=0, atol=2e-4)
        torch.testing.assert_close(ours["enc_outputs"]["pred_boxes"], hf_output.enc_outputs_coord_logits.sigmoid(),
                                   rtol=0, atol=2e-4)


@pytest.mark.parametrize("variant", list(HF_VARIANTS))
def test_same_outputs_losses_and_detections_as_hf(tmp_path, variant):
    hf = perturbed_hf_model(variant)
    hf.save_pretrained(tmp_path / "hf")
    convert_checkpoint_main(["--from", "hf", "--input", str(tmp_path / "hf"), "--output", str(tmp_path / "ours.pth"),
                             "--config-out", str(tmp_path / "ours.yaml")])
    cfg = load_config(str(tmp_path / "ours.yaml"), ["MODEL.DEVICE", "cpu"])
    assert (cfg.MODEL.MATCHER.COST_CLASS, cfg.MODEL.CRITERION.LOSS_CLASS_WEIGHT, cfg.MODEL.CRITERION.ENC_LOSS) == \
        (3.0, 1.0, False)
    model = build_model(cfg).eval()
    model.load_state_dict(torch.load(tmp_path / "ours.pth", weights_only=True)["model"], strict=True)

    images, padding_mask, targets = padded_batch()
    hf_labels = [{"class_labels": t["labels"], "boxes": t["boxes"]} for t in targets]
    with torch.no_grad():
        expected = hf(pixel_values=images, pixel_mask=(~padding_mask).long(), labels=hf_labels)
        outputs = model.forward_raw(images, padding_mask)
        losses = model.criterion.unweighted(outputs, targets)
        weighted = model.criterion.apply_weights(losses)
        detections = model.postprocessor(outputs, torch.tensor(SIZES))

    two_stage = variant == "two_stage"
    assert_outputs_close(outputs, expected, two_stage)
    for ours_aux, hf_aux in zip(outputs["aux_outputs"], expected.auxiliary_outputs, strict=True):
        torch.testing.assert_close(ours_aux["pred_logits"], hf_aux["logits"], rtol=0, atol=2e-4)
        torch.testing.assert_close(ours_aux["pred_boxes"], hf_aux["pred_boxes"], rtol=0, atol=2e-4)

    hf_losses = {key: value for key, value in expected.loss_dict.items() if key.startswith("loss_")}
    assert set(losses) == set(hf_losses) == {f"{term}{suffix}" for term in ("loss_ce", "loss_bbox", "loss_giou")
                                             for suffix in ("", "_0")}
    for key, value in hf_losses.items():
        torch.testing.assert_close(losses[key], value, rtol=1e-4, atol=1e-5, msg=key)
    torch.testing.assert_close(sum(weighted.values()), expected.loss, rtol=1e-4, atol=1e-5)

    processor = transformers.DeformableDetrImageProcessor()
    hf_detections = processor.post_process_object_detection(expected, threshold=0.0, target_sizes=SIZES, top_k=100)
    for ours_image, hf_image in zip(detections, hf_detections, strict=True):
        assert torch.equal(ours_image["labels"], hf_image["labels"])
        torch.testing.assert_close(ours_image["scores"], hf_image["scores"], rtol=0, atol=2e-5)
        torch.testing.assert_close(ours_image["boxes"], hf_image["boxes"], rtol=0, atol=2e-2)

    # and back: our weights, moved further (refined heads now differ per layer), exported and read by HF
    with torch.no_grad():
        for tensor in model.state_dict(keep_vars=True).values():
            if tensor.is_floating_point():
                tensor.add_(torch.randn_like(tensor) * 0.01)
        outputs = model.forward_raw(images, padding_mask)
    save_state_dict(str(tmp_path / "moved.pth"), model.state_dict())
    convert_checkpoint_main(["--to", "hf", "--config", str(tmp_path / "ours.yaml"), "--input",
                             str(tmp_path / "moved.pth"), "--output", str(tmp_path / "exported")])
    exported = transformers.DeformableDetrForObjectDetection.from_pretrained(tmp_path / "exported").eval()
    with torch.no_grad():
        assert_outputs_close(outputs, exported(pixel_values=images, pixel_mask=(~padding_mask).long()), two_stage)
