"""The CPU fast paths: one switch (MODEL.CPU_FAST_PATHS, DDETR_CPU_FAST_PATHS) reaching all three,
the same state dict and the same outputs either way."""
import pytest
import torch
from torch import nn

import ddetr_plugin.modeling  # noqa: F401  (registers the components)
from ddetr_plugin.config import get_cfg
from ddetr_plugin.modeling.cpu_fast_paths import (
    ENV_VAR,
    FastDropout,
    FastLinear,
    cpu_fast_paths_allowed,
    enable_cpu_fast_paths,
    use_fast_layers,
)
from ddetr_plugin.modeling.meta_arch import build_model
from ddetr_plugin.ops import onednn_linear
from ddetr_plugin.ops import seeded_dropout

# 3 levels of a 256 x 256 image: 32*32 + 16*16 + 8*8 = 1344 encoder rows, enough for the oneDNN path
TINY = [
    "MODEL.DEVICE", "cpu", "MODEL.NUM_CLASSES", 3, "MODEL.NUM_QUERIES", 6, "MODEL.NUM_FEATURE_LEVELS", 3,
    "MODEL.BACKBONE.DEPTH", 18, "MODEL.BACKBONE.NORM", "BN",
    "MODEL.TRANSFORMER.D_MODEL", 32, "MODEL.TRANSFORMER.NHEADS", 4, "MODEL.TRANSFORMER.ENC_LAYERS", 1,
    "MODEL.TRANSFORMER.DEC_LAYERS", 2, "MODEL.TRANSFORMER.DIM_FEEDFORWARD", 64,
    "MODEL.WITH_BOX_REFINE", True, "MODEL.TWO_STAGE", True,
]


def _model(fast: bool, *extra):
    cfg = get_cfg()
    cfg.merge_from_list(TINY + ["MODEL.CPU_FAST_PATHS", fast] + list(extra))
    torch.manual_seed(0)
    return build_model(cfg)


def _pair(*extra):
    """The same weights with the fast paths on and off."""
    fast, plain = _model(True, *extra), _model(False, *extra)
    plain.load_state_dict(fast.state_dict())
    return fast, plain


def _inputs():
    generator = torch.Generator().manual_seed(1)
    return [
        {"image": torch.randint(0, 256, (3, 256, 256), generator=generator, dtype=torch.uint8),
         "targets": {"boxes": torch.tensor([[10.0, 20.0, 120.0, 200.0]]), "labels": torch.tensor([1])}},
        {"image": torch.randint(0, 256, (3, 224, 240), generator=generator, dtype=torch.uint8),
         "targets": {"boxes": torch.tensor([[0.0, 0.0, 60.0, 50.0], [100.0, 90.0, 200.0, 220.0]]),
                     "labels": torch.tensor([0, 2])}},
    ]


def _kinds(model):
    return {type(module) for name, module in model.named_modules() if not name.startswith("backbone")}


def test_the_switch_reaches_all_three_paths(monkeypatch):
    fast, plain = _pair()
    assert fast.cpu_fast_paths and not plain.cpu_fast_paths
    assert {FastLinear, FastDropout} <= _kinds(fast) and not {nn.Linear, nn.Dropout} & _kinds(fast)
    assert not {FastLinear, FastDropout} & _kinds(plain)
    assert fast.backbone.channels_last_inference and not plain.backbone.channels_last_inference
    assert fast.state_dict().keys() == plain.state_dict().keys()
    # without box refinement the heads are one module under every index: still one after the swap
    shared = _model(True, "MODEL.WITH_BOX_REFINE", False, "MODEL.TWO_STAGE", False)
    assert shared.class_embed[0] is shared.class_embed[1] and type(shared.class_embed[0]) is FastLinear
    monkeypatch.setenv(ENV_VAR, "0")
    forced_off = _model(True)
    assert not forced_off.cpu_fast_paths and not forced_off.backbone.channels_last_inference
    assert not {FastLinear, FastDropout} & _kinds(forced_off)


def test_environment_variable_values(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert cpu_fast_paths_allowed(True) and not cpu_fast_paths_allowed(False)
    for off in ("0", "false", "OFF"):
        monkeypatch.setenv(ENV_VAR, off)
        assert not cpu_fast_paths_allowed(True)
    monkeypatch.setenv(ENV_VAR, "maybe")
    with pytest.raises(ValueError, match="DDETR_CPU_FAST_PATHS must be 0/1.*'maybe'"):
        cpu_fast_paths_allowed(True)


def test_only_exact_linear_and_dropout_layers_are_swapped():
    attention = nn.MultiheadAttention(8, 2)
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.2), attention, nn.Identity())
    state = {key: value.clone() for key, value in model.state_dict().items()}
    use_fast_layers(model)
    assert [type(m) for m in model] == [FastLinear, FastDropout, nn.MultiheadAttention, nn.Identity]
    assert type(attention.out_proj) is not FastLinear  # its forward is not called; left as torch built it
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(model.state_dict()[key], value) for key, value in state.items())


def test_a_backbone_keeps_its_own_layers():
    fast = _model(True)
    fast.backbone.body.add_module("extra", nn.Linear(2, 2))  # e.g. a timm backbone's layers
    enable_cpu_fast_paths(fast)
    assert type(fast.backbone.body.extra) is nn.Linear


@pytest.mark.skipif(not onednn_linear._ONEDNN, reason="this torch has no oneDNN")
def test_eval_outputs_agree(monkeypatch):
    fast, plain = _pair()
    fast.eval(), plain.eval()
    calls = []
    real = onednn_linear._onednn_linear
    monkeypatch.setattr(onednn_linear, "_onednn_linear", lambda *args: calls.append(1) or real(*args))
    with torch.no_grad():
        images, mask, _ = fast.preprocess_images(_inputs())
        got, want = fast.forward_raw(images, mask), plain.forward_raw(images, mask)
    assert calls  # the fast linear ran, not only its fallback
    # not bit-equal: oneDNN and MKL sum the products, and channels-last and NCHW convolutions the taps,
    # in different orders (float32 rounding, carried through the layers)
    torch.testing.assert_close(got["pred_logits"], want["pred_logits"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got["pred_boxes"], want["pred_boxes"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["enc_outputs"]["pred_logits"], want["enc_outputs"]["pred_logits"],
                               rtol=1e-5, atol=5e-5)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_a_training_step_agrees_without_dropout(dropout):
    fast, plain = _pair("MODEL.TRANSFORMER.DROPOUT", dropout)
    steps = []
    for model in (fast, plain):
        model.train()
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.eval()  # dropout off (p = 0.1: the attention weights' dropout alone stays on, the same)
        torch.manual_seed(2)
        losses = model(_inputs())
        sum(losses.values()).backward()
        steps.append((losses, {name: p.grad for name, p in model.named_parameters() if p.grad is not None}))
    (fast_losses, fast_grads), (plain_losses, plain_grads) = steps
    assert fast_losses.keys() == plain_losses.keys() and fast_grads.keys() == plain_grads.keys()
    # float32 rounding of the oneDNN products (forward and input gradient), as in the eval test; atol for
    # gradients that are 0 up to rounding (the conv biases before GroupNorm)
    for name in fast_losses:
        torch.testing.assert_close(fast_losses[name], plain_losses[name], rtol=1e-5, atol=1e-6)
    for name in fast_grads:
        torch.testing.assert_close(fast_grads[name], plain_grads[name], rtol=1e-4, atol=2e-6, msg=name)


@pytest.mark.skipif(not seeded_dropout._NATIVE, reason="the native extension is not built")
def test_fast_layers_are_drop_in_modules():
    torch.manual_seed(3)
    reference, layer = nn.Linear(24, 10), nn.Linear(24, 10)
    use_fast_layers(layer)
    layer.load_state_dict(reference.state_dict())
    x = torch.randn(4, 600, 24)
    torch.testing.assert_close(layer(x), reference(x), rtol=1e-5, atol=1e-5)
    dropout = FastDropout(0.5)
    torch.manual_seed(0)
    first = dropout(x)
    torch.manual_seed(0)
    assert torch.equal(dropout(x), first)  # the seed comes from torch's generator
    kept = first != 0
    torch.testing.assert_close(first[kept], x[kept] * 2)
    assert dropout.eval()(x) is x
