"""The device the Triton kernels run on here: CPU tensors under the interpreter, else CUDA."""
import pytest

from ddetr_plugin.ops.triton import interpreter_active
from ddetr_plugin.ops.triton.availability import triton_import_error


@pytest.fixture
def device():
    error = triton_import_error()
    if error is not None:
        pytest.skip(error)
    return "cpu" if interpreter_active() else "cuda"
