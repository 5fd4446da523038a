"""Bad inputs give a clear error naming the argument before any kernel runs."""
import subprocess
import sys

import pytest
import torch

from ddetr_plugin.ops import multi_scale_deformable_attention, native_available

from tests._support.op_inputs import make_inputs


def call(value, shapes, starts, locations, weights, **kwargs):
    return multi_scale_deformable_attention(value, shapes, starts, locations, weights, **kwargs)


@pytest.mark.parametrize("backend", ["native", "triton", "pytorch"])
@pytest.mark.parametrize(
    "mutate, error, message",
    [
        (lambda a: (a[0][0],) + a[1:], ValueError, "value must be (N, S, M, D)"),
        (lambda a: (a[0], a[1][:, :1]) + a[2:], ValueError, "spatial_shapes must be (L, 2)"),
        (lambda a: a[:2] + (a[2][:1],) + a[3:], ValueError, "level_start_index must be (L,)"),
        (lambda a: a[:3] + (a[3][..., :1],) + a[4:], ValueError, "sampling_locations must be (N, Lq, M, L, P, 2)"),
        (lambda a: a[:4] + (a[4][..., :1],), ValueError, "attention_weights must be (N, Lq, M, L, P)"),
        (lambda a: a[:3] + (a[3].float(),) + a[4:], TypeError, "sampling_locations must have value's dtype"),
        (lambda a: (a[0].long(),) + a[1:], TypeError, "value must be a floating-point tensor"),
        (lambda a: (a[0], a[1].float()) + a[2:], TypeError, "spatial_shapes must be int64"),
        (lambda a: a[:2] + (a[2] + 1,) + a[3:], ValueError, "level_start_index [1, 49] disagrees with spatial_shapes"),
        (lambda a: (a[0][:, :-1],) + a[1:], ValueError, "cover 60 positions but value has S = 59"),
        (lambda a: (a[0], a[1] * 0) + a[2:], ValueError, "spatial_shapes must be positive"),
    ],
)
def test_bad_inputs_name_the_argument(backend, mutate, error, message):
    args = tuple(t.detach() for t in make_inputs())
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        call(*mutate(args), backend=backend)


def test_device_mismatch_is_named():
    value, shapes, starts, locations, weights = (t.detach() for t in make_inputs())
    with pytest.raises(ValueError, match="spatial_shapes is on meta but value is on cpu"):
        call(value, shapes.to("meta"), starts, locations, weights)


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend must be one of"):
        call(*make_inputs(), backend="cudnn")


def test_native_backend_refuses_what_it_cannot_run():
    value, shapes, starts, locations, weights = (t.detach().to(torch.bfloat16) if t.is_floating_point() else t
                                                 for t in make_inputs())
    with pytest.raises(RuntimeError, match="the cpu kernel takes float32, float64, not bfloat16"):
        call(value, shapes, starts, locations, weights, backend="native")
    # "auto" falls back to the reference for the same inputs.
    assert call(value, shapes, starts, locations, weights).dtype == torch.bfloat16


@pytest.mark.skipif(not native_available("cpu"), reason="the native op is not built")
def test_native_kernel_checks_levels_when_called_directly():
    value, shapes, starts, locations, weights = (t.detach() for t in make_inputs(dtype=torch.float32))
    with pytest.raises(RuntimeError, match="does not fit in the 60 value positions"):
        torch.ops.ddetr.ms_deform_attn_forward(value, shapes, starts + 50, locations, weights, 64)


def test_missing_extension_warns_once_and_falls_back():
    code = (
        "import sys, warnings\n"
        "sys.modules['ddetr_plugin._C'] = None\n"  # makes `from ddetr_plugin import _C` fail
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import ddetr_plugin.ops as ops\n"
        "    import ddetr_plugin.ops.native\n"
        "messages = [str(w.message) for w in caught if 'native op is not available' in str(w.message)]\n"
        "assert len(messages) == 1, messages\n"
        "assert not ops.native_available('cpu')\n"
        "from tests._support.op_inputs import make_inputs\n"
        "out = ops.multi_scale_deformable_attention(*make_inputs())\n"
        "try:\n"
        "    ops.multi_scale_deformable_attention(*make_inputs(), backend='native')\n"
        "except RuntimeError as e:\n"
        "    assert 'not built' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('native backend did not fail')\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
