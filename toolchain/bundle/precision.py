"""THE precision table: every precision a bundle can have, one frozen row each.

A row is what every layer needs to know about a precision without importing the exporter: its name
(the manifest's ``precision`` and ``kdtool export --precision``), whether the bundled graph needs
calibration windows, the TensorRT precision, the ONNX Runtime execution providers that can run the
graph, and the bounds of the bundle's self-test. How the export makes the graphs is one class per
precision, named by ``exporter`` ("module:Class") and imported only by the export pipeline
(:mod:`kdtool.export.precisions`). A new precision is one row here plus one module there.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdtool.errors import InputError

CPU, CUDA, TRT_EP = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
TRT_PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Precision:
    name: str  # in the manifest ("precision") and on the CLI (--precision)
    exporter: str  # "module:Class" of its export behaviour (kdtool.export.precisions)
    calibrated: bool  # the bundled graph needs calibration windows (--calibration-data)
    trt_precision: str  # the TRT-ready graph's and the TensorRT builder's precision (manifest tensorrt.precision)
    providers: tuple[str, ...]  # ONNX Runtime execution providers that can run the bundled graph
    about: str = ""
    # the floor of the bundle's self-test bound (kdtool.bundle.selftest): the largest |logit difference| from the
    # logits the export machine's ONNX Runtime gave that a device may always show, on CPU engines and on
    # CUDA/TensorRT ones. A bundle's bound is the larger of this floor and its own certified error (its parity
    # against the reference the export checked it with): see export/self_test.py
    self_test_cpu: float = 1e-3
    self_test_cuda: float = 1e-2

    @property
    def int8(self) -> bool:
        """INT8 weights: what --reduce-range can narrow, and what the target's arithmetic class decides."""
        return self.trt_precision == "int8"

    @property
    def self_test_bound(self) -> dict[str, float]:
        return {"cpu": self.self_test_cpu, "cuda": self.self_test_cuda}


_X = "kdtool.export.precisions."
# INT8 on another x86 class, with exact integer products, still differs a little: the float parts of ONNX
# Runtime's INT8 kernels (quantizing activations, scaling outputs) have other vector code per ISA, and a value
# rounded the other way moves a logit. Measured (bench/int8_forms.py; all-MiniLM-L6 weights, AVX-512 VNNI host
# against emulated AVX2): up to 0.058 (dynamic) and 0.069 (QAT graph), where FP32 bundles agreed to the bit.
# GPU floors are not measured (no GPU was lent): TensorRT's INT8 and FP16 kernels are not the CPU's.
INT8_CPU, INT8_CUDA = 0.1, 0.25
# ORT's CUDA provider does not run INT8 graphs: INT8 rows list TensorRT and the CPU only
PRECISIONS: dict[str, Precision] = {p.name: p for p in (
    Precision("fp32", _X + "fp32:Fp32", False, "fp32", (TRT_EP, CUDA, CPU), "the fused FP32 graph"),
    Precision("fp16", _X + "fp16:Fp16", False, "fp16", (TRT_EP, CUDA, CPU), "FP16 weights and activations",
              self_test_cpu=0.05, self_test_cuda=0.1),
    Precision("int8", _X + "int8_dynamic:Int8Dynamic", False, "int8", (TRT_EP, CPU),
              "INT8 weights, activations quantized at run time", self_test_cpu=INT8_CPU, self_test_cuda=INT8_CUDA),
    Precision("int8-static", _X + "int8_static:Int8Static", True, "int8", (TRT_EP, CPU),
              "INT8 with calibrated activation scales", self_test_cpu=INT8_CPU, self_test_cuda=INT8_CUDA),
    Precision("int8-qat", _X + "int8_qat:Int8Qat", False, "int8", (TRT_EP, CPU),
              "INT8 Q/DQ with the scales of quantization-aware training", self_test_cpu=INT8_CPU, self_test_cuda=INT8_CUDA),
)}

# TensorRT 10 (weakly typed networks) needs builder flags beside the graph's own precision; TRT 11 does not
TRT_BUILDER_FLAGS: dict[str, tuple[str, ...]] = {"fp32": (), "fp16": ("FP16",), "int8": ("INT8", "FP16")}


def get_precision(name: str) -> Precision:
    """The row of ``name``; an InputError naming the choices when there is none."""
    try:
        return PRECISIONS[name]
    except KeyError:
        raise InputError(f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}") from None


def manifest_precision(manifest: dict) -> Precision | None:
    """The row a bundle's manifest names (None for a precision this kdtool does not know)."""
    return PRECISIONS.get(str(manifest.get("precision", "")))
