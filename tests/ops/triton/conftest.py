"""The Triton tests. ``kernels/`` runs the kernels themselves, so it is collected only where
they can run in this process: under Triton's interpreter (``TRITON_INTERPRET=1`` set before
anything imported triton; ``test_interpreter.py`` starts such a process) or with a GPU."""
import os

import torch

if os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available():
    collect_ignore = ["kernels"]
