"""``int8-static``: INT8 QDQ with activation scales calibrated on real windows (ONNX Runtime static quantization)."""

from __future__ import annotations

from kdtool.export.precisions.int8_calibrated import CalibratedTrtInt8
from kdtool.export.quantize import quantize_int8_static


class Int8Static(CalibratedTrtInt8):
    def bundle_graph(self, graph, final, config, calibration, *, fused):
        return quantize_int8_static(graph, final, calibration, method=config.calibration_method,
                                    per_channel=config.per_channel, fused=fused, reduce_range=config.reduce_range)
