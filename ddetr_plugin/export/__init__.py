"""Deployment: the detector as a tensors-only graph, torch.export with dynamic sizes, ONNX.

``ddetr_plugin.export.onnx`` needs onnx, onnxscript and onnxruntime; it is imported on
its own so that the rest works without them.
"""
from .graph import DetectorGraph, minimum_image_side
from .program import check_exportable, export_program

__all__ = ["DetectorGraph", "check_exportable", "export_program", "minimum_image_side"]
