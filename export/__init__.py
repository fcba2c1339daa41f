"""kdtool.export: building bundles (ONNX export, fusion, quantization, TensorRT-ready graphs and engines).

    export_model(ExportConfig(...))  -> bundle directory      (kdtool.export.pipeline)

The bundle format itself is :mod:`kdtool.bundle`; the engines that run bundles are :mod:`kdtool.engines`.

Submodules import heavy packages (torch, onnx, onnxruntime, tensorrt) only when used.
"""

from kdtool.export.config import ExportConfig
from kdtool.export.pipeline import export_model

__all__ = ["ExportConfig", "export_model"]
