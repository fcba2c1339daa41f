"""INT8 quantization with onnxruntime.quantization: dynamic, static (QDQ) and TensorRT-style Q/DQ.

- dynamic: weights INT8 ahead of time, activations quantized per batch at run time. On a fused
  graph ORT quantizes the Attention op too (QAttention), which is where the CPU speed comes from.
- static: QDQ form, activations (UINT8, asymmetric) and weights (INT8) calibrated on real feature
  windows from a SQuAD file (minmax, entropy or percentile). A fused graph first gets ORT's
  symbolic shape inference: without the types of contrib-op outputs the quantizer silently keeps
  activations in FP32 and ORT turns the result into weight-only MatMulNBits. With it, every
  MatMul reads Q/DQ'd activations and ORT runs QLinearMatMul.
- tensorrt: symmetric INT8 Q/DQ on the plain (unfused) graph, the form TensorRT's explicit
  quantization consumes; per-channel weights.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

import numpy as np

from kdtool.engines.base import input_feed
from kdtool.errors import KdtoolError

FUSED_EXTRA = {"DefaultTensorType": 1}  # onnx.TensorProto.FLOAT: types of contrib-op outputs the quantizer cannot infer


class WindowReader:
    """A CalibrationDataReader over prepared feature batches, feeding only the graph's inputs."""

    def __init__(self, batches: list[dict[str, np.ndarray]], input_names: list[str]):
        self.batches, self.input_names = batches, input_names
        self._it = iter(self._feeds())

    def _feeds(self):
        for b in self.batches:
            yield input_feed(b, self.input_names)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self._feeds())


@contextlib.contextmanager
def _quiet():
    """onnxruntime.quantization logs advice on the root logger; keep it out of the CLI's output."""
    root = logging.getLogger()
    level = root.level
    if level > logging.DEBUG:
        root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _input_names(path: Path) -> list[str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits]


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[name]


def quantize_int8_dynamic(src: Path, dst: Path, *, fused: bool, per_channel: bool = False,
                          reduce_range: bool = False) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        with _quiet():
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel,
                             reduce_range=reduce_range, extra_options=dict(FUSED_EXTRA) if fused else None)
    except Exception as err:
        raise KdtoolError(f"INT8 dynamic quantization failed: {type(err).__name__}: {str(err).splitlines()[0][:160]}") from None
    return {"mode": "dynamic", "weights": "int8", "activations": "uint8 per batch (run time)",
            "per_channel": per_channel, "reduce_range": reduce_range, "quantized_attention": fused}


def quantize_int8_static(src: Path, dst: Path, batches, *, method: str, per_channel: bool = False,
                         symmetric: bool = False, op_types: list[str] | None = None, fused: bool = False,
                         reduce_range: bool = False) -> dict:
    """QDQ static quantization calibrated on ``batches``; ``symmetric`` gives the TensorRT form."""
    from onnxruntime.quantization import QuantType

    extra = dict(FUSED_EXTRA) if fused else {}
    if symmetric:
        extra.update(ActivationSymmetric=True, WeightSymmetric=True)
    if method == "percentile":
        extra.update(CalibPercentile=99.99)
    act = QuantType.QInt8 if symmetric else QuantType.QUInt8
    with tempfile.TemporaryDirectory(prefix="kdtool-quant-") as tmp:
        if fused:  # without shapes of the contrib ops' outputs the quantizer leaves activations in FP32
            src = _with_symbolic_shapes(src, Path(tmp) / "shaped.onnx")
        _quantize_static(src, dst, batches, act, method, per_channel, reduce_range, op_types, extra)
    return {"mode": "static", "format": "QDQ", "weights": "int8", "activations": "int8" if symmetric else "uint8",
            "symmetric": symmetric, "per_channel": per_channel, "reduce_range": reduce_range, "calibration_method": method,
            "calibration_windows": int(sum(len(b["input_ids"]) for b in batches)),
            "op_types": op_types or "default"}


def _with_symbolic_shapes(src: Path, dst: Path) -> Path:
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    try:
        model = SymbolicShapeInference.infer_shapes(onnx.load(str(src)), auto_merge=True)
    except Exception:  # shape inference is an aid; quantization still works (weights only) without it
        return src
    onnx.save_model(model, str(dst), save_as_external_data=model.ByteSize() > (1 << 31) - (1 << 26))
    return dst


def _quantize_static(src, dst, batches, act, method, per_channel, reduce_range, op_types, extra) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    try:
        with _quiet():
            quantize_static(str(src), str(dst), WindowReader(batches, _input_names(src)), quant_format=QuantFormat.QDQ,
                            activation_type=act, weight_type=QuantType.QInt8, per_channel=per_channel,
                            reduce_range=reduce_range,
                            calibrate_method=_method(method), op_types_to_quantize=op_types, extra_options=extra)
    except Exception as err:
        raise KdtoolError(f"INT8 static quantization failed: {type(err).__name__}: {str(err).splitlines()[0][:160]}") from None
