"""``torch.export`` of the whole detector with free batch size, image height and width.

The exported graph keeps the deformable attention as one node, the custom op
``ddetr::ms_deform_attn_forward`` (its fake implementation gives shapes while tracing),
so the program runs the same native kernel as eager inference. It is the starting point
for the other deployment routes: ``torch.export.save`` / ``load``; AOTInductor
(``torch._inductor.aoti_compile_and_package(program)`` compiles it into a ``.pt2`` package
that C++ or Python loads without the model's code; the op's library must be loaded there
too); and ONNX (``ddetr_plugin.export.onnx``).
"""
from typing import Optional

import torch

from ..modeling.meta_arch import DeformableDETR
from ..modeling.postprocessor import DetectionPostProcessor
from ..ops import native_available
from .graph import DetectorGraph, minimum_image_side, msda_backends

NATIVE_OP = "ddetr::ms_deform_attn_forward"


def check_exportable(model: DeformableDETR) -> None:
    """Raise ValueError unless ``model`` traces with dynamic image sizes.

    The PyTorch reference of the op reads the level sizes out of a tensor (data a trace cannot
    know), so only the custom op keeps height and width free.
    """
    if model.training:
        raise ValueError("export needs the model in eval mode: call model.eval() first")
    if model.device.type != "cpu":
        raise ValueError(f"export the model on the CPU (MODEL.DEVICE cpu), not {model.device}")
    backends = msda_backends(model)
    if "pytorch" in backends:
        raise ValueError(
            f"MODEL.TRANSFORMER.MSDA_BACKEND is 'pytorch': export with dynamic image sizes traces the custom op "
            f"{NATIVE_OP}; set it to 'auto' or 'native'")
    if not native_available("cpu"):
        raise ValueError(
            f"export traces the custom op {NATIVE_OP}, but the native extension ddetr_plugin._C is not built "
            f"(pip install --no-build-isolation -e . builds it)")


def export_program(
    model: DeformableDETR,
    *,
    height: int = 256,
    width: int = 320,
    batch: int = 2,
    postprocessor: Optional[DetectionPostProcessor] = None,
) -> torch.export.ExportedProgram:
    """``DetectorGraph(model, postprocessor)`` exported with dynamic batch, height and width.

    Args:
        model: the detector, in eval mode, on the CPU.
        height, width, batch: the example inputs' size; any size works afterwards, down to
            ``minimum_image_side(model)`` per side. A batch of 1 would fix the batch size
            (export treats size-1 axes as constants).
        postprocessor: include its top-k (the graph then takes ``target_sizes`` too).

    Returns:
        The ExportedProgram; ``program.module()(*inputs)`` runs it.

    Raises:
        ValueError: the model cannot be exported (see ``check_exportable``), or the example size is too small.
    """
    check_exportable(model)
    smallest = minimum_image_side(model)
    if min(height, width) < smallest or batch < 2:
        raise ValueError(f"the example inputs must be at least {smallest} pixels per side (got {height}x{width}) "
                         f"and a batch of at least 2 (got {batch})")
    graph = DetectorGraph(model, postprocessor).eval()
    with torch.no_grad():
        return torch.export.export(
            graph, graph.example_inputs(batch, height, width), dynamic_shapes=graph.dynamic_shapes()
        )
