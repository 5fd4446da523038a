"""Multi-scale deformable attention in Triton: forward and backward kernels, registered as
``torch.ops.ddetr.ms_deform_attn_triton_forward`` / ``_backward`` through ``torch.library``.

- ``sampling.py``: the bilinear footprint and corner loads both kernels share;
- ``forward.py`` / ``backward.py``: the kernels;
- ``launch.py``: launch parameters from the problem size;
- ``op.py``: the operators, their autograd formula and the deterministic-mode check;
- ``availability.py``: whether the backend can run here (imports Triton only when asked).

On CUDA tensors the kernels are compiled by Triton; on CPU tensors they run only under
Triton's interpreter (``TRITON_INTERPRET=1``), which is how CI tests them.
"""
from .availability import TRITON_DTYPES, interpreter_active, triton_unsupported_reason, triton_version

__all__ = ["TRITON_DTYPES", "interpreter_active", "triton_unsupported_reason", "triton_version"]
