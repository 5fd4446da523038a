"""ddetr::seeded_dropout: a dropout mask that is a function of (seed, index), its own backward."""
import pytest
import torch
import torch.nn.functional as F

from ddetr_plugin.ops import dropout
from ddetr_plugin.ops import seeded_dropout as seeded_dropout_module

pytestmark = pytest.mark.skipif(not seeded_dropout_module._NATIVE, reason="the native extension is not built")


def _op(x, p, seed):
    return torch.ops.ddetr.seeded_dropout(x, p, seed)


def test_kept_elements_are_scaled_and_the_rest_are_zero():
    x = torch.rand(1001, 37, dtype=torch.float64) + 1.0  # no zeros of its own
    out = _op(x, 0.25, 7)
    kept = out != 0
    torch.testing.assert_close(out[kept], x[kept] * (1 / 0.75), rtol=0, atol=0)  # as torch's dropout
    # 37,037 Bernoulli(0.75) draws: standard deviation of the kept fraction ~0.0023
    assert abs(kept.double().mean().item() - 0.75) < 0.01


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_drop_rate_and_independence_of_neighbours(p):
    keep = _op(torch.ones(1_000_000), p, 123) != 0
    assert abs(keep.double().mean().item() - (1 - p)) < 0.003  # ~6 standard deviations
    # neighbouring elements (consecutive hash inputs) are kept independently: P(both kept) = (1-p)^2
    both = (keep[:-1] & keep[1:]).double().mean().item()
    assert abs(both - (1 - p) ** 2) < 0.003


def test_the_mask_depends_only_on_seed_and_index():
    x = torch.randn(4096)
    first = _op(x, 0.3, 42)
    torch.testing.assert_close(_op(x, 0.3, 42), first, rtol=0, atol=0)
    assert not torch.equal(_op(x, 0.3, 43) != 0, first != 0)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        torch.testing.assert_close(_op(x, 0.3, 42), first, rtol=0, atol=0)
    finally:
        torch.set_num_threads(threads)
    # a non-contiguous input is masked in its logical (row-major) order
    matrix = torch.randn(64, 64)
    torch.testing.assert_close(_op(matrix.t(), 0.3, 5), _op(matrix.t().contiguous(), 0.3, 5), rtol=0, atol=0)


def test_backward_applies_the_same_mask_to_the_gradient():
    x = torch.randn(300, 11, dtype=torch.float64, requires_grad=True)
    out = _op(x, 0.4, 9)
    grad_output = torch.randn_like(out)
    out.backward(grad_output)
    torch.testing.assert_close(x.grad, torch.where(out != 0, grad_output / 0.6, 0.0), rtol=0, atol=1e-15)
    assert torch.autograd.gradcheck(lambda t: _op(t, 0.4, 9), (torch.randn(20, 3, dtype=torch.float64,
                                                                            requires_grad=True),))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_reduced_precision_matches_float64_masking(dtype):
    x = torch.randn(5000, dtype=torch.float64)
    expected = _op(x, 0.2, 3).to(dtype)
    torch.testing.assert_close(_op(x.to(dtype), 0.2, 3), expected)


def test_opcheck():
    torch.library.opcheck(torch.ops.ddetr.seeded_dropout.default, (torch.randn(8, 5, requires_grad=True), 0.3, 11))


def test_bad_arguments_are_named():
    with pytest.raises(RuntimeError, match=r"p must be in \[0, 1\), got 1"):
        _op(torch.ones(3), 1.0, 0)
    with pytest.raises(RuntimeError, match="must be a floating point tensor"):
        _op(torch.ones(3, dtype=torch.int64), 0.1, 0)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\), got -0.1"):
        dropout(torch.ones(3), -0.1, training=True)


def test_dropout_function_seeds_from_torch_generator():
    x = torch.randn(64, 32)
    assert dropout(x, 0.5, training=False) is x and dropout(x, 0.0, training=True) is x
    torch.manual_seed(0)
    first = dropout(x, 0.5, training=True)
    torch.manual_seed(0)
    torch.testing.assert_close(dropout(x, 0.5, training=True), first, rtol=0, atol=0)
    assert not torch.equal(dropout(x, 0.5, training=True), first)  # and the generator advanced
    kept = first != 0
    torch.testing.assert_close(first[kept], x[kept] * 2)


def test_falls_back_to_torch_dropout_without_the_extension(monkeypatch):
    monkeypatch.setattr(seeded_dropout_module, "_NATIVE", False)
    calls, torch_dropout = [], F.dropout
    monkeypatch.setattr(seeded_dropout_module.F, "dropout",
                        lambda x, p, training: calls.append(p) or torch_dropout(x, p, training))
    out = dropout(torch.ones(100), 0.3, training=True)
    assert calls == [0.3] and set(out.unique().tolist()) <= {0.0, torch.tensor(1 / 0.7).item()}
