"""What a precision does at export, as one class: the base every precision module subclasses.

A precision is a row of the precision table (:mod:`kdtool.bundle.precision`: its name, providers,
TensorRT precision, self-test bounds; the data engines and profiles read) plus one class here, named
by the row's ``exporter``: how the plain ONNX graph is made and checked, whether it is fused, how the
bundled graph is made from it, and how the TensorRT-ready graph is. The export pipeline
(:mod:`kdtool.export.pipeline`) calls these hooks in order and branches on no precision name.
"""

from __future__ import annotations

from pathlib import Path

from kdtool.bundle.precision import Precision
from kdtool.errors import InputError
from kdtool.export.config import ExportConfig


class PrecisionExport:
    """The FP32 behaviour; precisions override what they do differently."""

    trt_needs_calibration = False  # the TRT-ready graph needs calibration windows (--trt ... --calibration-data)
    gates_bundle_parity = False  # the bundled graph must match PyTorch to the FP32 tolerance, or the export fails
    exporter_name = "Optimum"  # what makes the plain ONNX graph, for the progress line

    def __init__(self, row: Precision):
        self.row = row

    def check(self, config: ExportConfig) -> None:
        """Refuse options this precision cannot honour (InputError), before any work."""
        if self.row.calibrated and config.calibration_data is None:
            raise InputError(f"--precision {self.row.name} needs real calibration features: pass --calibration-data SQUAD.json")
        if config.trt and self.trt_needs_calibration and config.calibration_data is None:
            raise InputError("--trt at INT8 needs calibrated Q/DQ scales: pass --calibration-data SQUAD.json")
        if config.reduce_range and not self.row.int8:
            raise InputError(f"--reduce-range narrows INT8 weights, but the precision is {self.row.name}; "
                             "add --precision int8 (or int8-static), or drop --reduce-range")

    def needs_calibration(self, config: ExportConfig) -> bool:
        return self.row.calibrated or (config.trt and self.trt_needs_calibration)

    def fuse(self, config: ExportConfig, custom) -> bool:
        """Whether ORT's transformer fusion runs on the plain graph (a custom exporter says whether it can)."""
        return config.fuse and (custom is None or custom.fuse)

    def plain_graph(self, model, config: ExportConfig, work: Path, checks, task) -> Path:
        """The plain (unfused) FP32 ONNX graph of ``model``: Optimum's exporter, or the model type's own."""
        from kdtool.export.onnx_export import export_onnx

        return export_onnx(config.model_dir, work / "plain", opset=config.opset, trust_remote_code=config.trust_remote_code,
                           task=task.optimum_task, model_type=model.config.model_type)

    reference_name = "pytorch fp32"  # what the plain graph's parity is measured against

    def plain_tolerance(self, config: ExportConfig) -> float:
        return config.parity_tolerance

    def bundle_graph(self, graph: Path, final: Path, config: ExportConfig, calibration, *, fused: bool) -> dict:
        """Write the bundled graph ``final`` from the (fused) FP32 ``graph``; return the manifest's ``quantization``."""
        from kdtool.export.onnx_io import copy_onnx

        copy_onnx(graph, final)
        return {"mode": "none"}

    def trt_graph(self, plain: Path, dst: Path, config: ExportConfig, calibration) -> dict:
        """Write the TRT-ready graph from the plain one; return how it was made (manifest ``tensorrt.onnx``)."""
        import shutil

        shutil.copyfile(plain, dst)
        return {"precision": self.row.trt_precision, "form": "plain ONNX"}
