"""What the INT8 precisions quantized by ONNX Runtime share: a TensorRT graph of symmetric Q/DQ calibrated on real windows."""

from __future__ import annotations

from kdtool.export.precisions.base import PrecisionExport
from kdtool.export.quantize import quantize_int8_static


class CalibratedTrtInt8(PrecisionExport):
    trt_needs_calibration = True

    def trt_graph(self, plain, dst, config, calibration):
        info = quantize_int8_static(plain, dst, calibration, method=config.calibration_method, per_channel=True,
                                    symmetric=True, op_types=["MatMul", "Gemm"])
        return {"precision": self.row.trt_precision, "form": "symmetric INT8 Q/DQ (explicit quantization)", **info}
