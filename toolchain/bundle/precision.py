"""THE precision table: every precision a bundle can have, one frozen row each, read by the export
pipeline (which quantizer, whether calibration windows are needed, the exactness gate), the TensorRT
stage (the TRT-ready graph, the builder's precision and flags) and the engines (which ONNX Runtime
execution providers can run the graph). A new precision is one row here.

``name`` is what the manifest's ``precision`` field and ``kdtool export --precision`` say.
"""

from __future__ import annotations

from dataclasses import dataclass

from kdtool.errors import InputError

CPU, CUDA, TRT_EP = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
QUANTIZERS = ("none", "fp16", "dynamic", "static", "qat")
TRT_PRECISIONS = ("fp32", "fp16", "int8")
# how the TRT-ready graph is made from the plain FP32 one: as it is, FP16 through Cast nodes, symmetric Q/DQ
# with scales calibrated on real windows, or the Q/DQ graph of quantization-aware training (its own scales)
TRT_GRAPHS = ("plain", "fp16", "qdq-calibrated", "qdq-qat")


@dataclass(frozen=True)
class Precision:
    name: str  # in the manifest ("precision") and on the CLI (--precision)
    quantizer: str  # how the bundled graph is made from the FP32 one: one of QUANTIZERS
    calibrated: bool  # the bundled graph needs calibration windows (--calibration-data)
    trt_precision: str  # the TRT-ready graph's and the TensorRT builder's precision (manifest tensorrt.precision)
    trt_graph: str  # how the TRT-ready graph is made: one of TRT_GRAPHS
    providers: tuple[str, ...]  # ONNX Runtime execution providers that can run the bundled graph
    about: str = ""
    # the bundle's self-test (kdtool.bundle.selftest): the largest |logit difference| from the logits the export
    # machine's ONNX Runtime gave that a device may show, on CPU engines and on CUDA/TensorRT ones
    self_test_cpu: float = 1e-3
    self_test_cuda: float = 1e-2

    @property
    def trt_calibrated(self) -> bool:
        """The TRT-ready graph needs calibration windows (--trt at this precision needs --calibration-data)."""
        return self.trt_graph == "qdq-calibrated"

    @property
    def int8(self) -> bool:
        """INT8 weights: what --reduce-range can narrow."""
        return self.trt_precision == "int8"

    @property
    def self_test_bound(self) -> dict[str, float]:
        return {"cpu": self.self_test_cpu, "cuda": self.self_test_cuda}

    @property
    def exact(self) -> bool:
        """The bundled graph must match PyTorch to the FP32 parity tolerance."""
        return self.quantizer == "none"


# ORT's CUDA provider does not run INT8 graphs: INT8 rows list TensorRT and the CPU only
PRECISIONS: dict[str, Precision] = {p.name: p for p in (
    Precision("fp32", "none", False, "fp32", "plain", (TRT_EP, CUDA, CPU), "the fused FP32 graph"),
    Precision("fp16", "fp16", False, "fp16", "fp16", (TRT_EP, CUDA, CPU), "FP16 weights and activations"),
    Precision("int8", "dynamic", False, "int8", "qdq-calibrated", (TRT_EP, CPU),
              "INT8 weights, activations quantized at run time"),
    Precision("int8-static", "static", True, "int8", "qdq-calibrated", (TRT_EP, CPU), "INT8 with calibrated activation scales"),
    Precision("int8-qat", "qat", False, "int8", "qdq-qat", (TRT_EP, CPU),
              "INT8 Q/DQ with the scales of quantization-aware training"),
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
