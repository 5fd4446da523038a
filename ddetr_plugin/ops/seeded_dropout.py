"""Dropout with a mask that is a pure function of (seed, element index): fast on the CPU.

torch's CPU dropout samples one Bernoulli variable per element sequentially and saves the
mask for backward, slow on the encoder's large activations. ``ddetr::seeded_dropout`` (csrc/cpu/seeded_dropout_cpu.cpp) hashes the element
index with a seed in one parallel pass, and its backward is the same op on the gradient with
the same seed, so nothing is saved. The seed is drawn from torch's global CPU generator, so
seeding, and checkpointed RNG states, make runs reproducible as with ``F.dropout``.

Elsewhere (CUDA, no extension, inside ``torch.compile``) ``F.dropout`` runs: the mask
differs from this op's, the distribution does not.
"""
import torch
import torch.nn.functional as F

from .native import _C

_SEED_BOUND = 2**62
# False also when the extension predates the op (built from an older checkout): F.dropout then
_NATIVE = _C is not None and hasattr(torch.ops.ddetr, "seeded_dropout")


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1 / (1 - p) when ``training``.

    Args:
        x: any shape.
    Returns:
        same shape and dtype as ``x``; ``x`` itself when not training or ``p`` is 0.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    if not _NATIVE or x.device.type != "cpu" or not x.is_floating_point() or torch.compiler.is_compiling():
        return F.dropout(x, p, training=True)
    seed = int(torch.randint(_SEED_BOUND, (), dtype=torch.int64))
    return torch.ops.ddetr.seeded_dropout(x, float(p), seed)


def _register_native_op() -> None:
    """Autograd and fake implementations of ``ddetr::seeded_dropout``."""

    @torch.library.register_fake("ddetr::seeded_dropout")
    def _fake(x, p, seed):
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    def setup_context(ctx, inputs, output):
        _, ctx.p, ctx.seed = inputs

    def backward(ctx, grad_output):
        return torch.ops.ddetr.seeded_dropout(grad_output, ctx.p, ctx.seed), None, None

    torch.library.register_autograd("ddetr::seeded_dropout", backward, setup_context=setup_context)


if _NATIVE:
    _register_native_op()
