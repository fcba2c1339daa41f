"""``int8``: INT8 weights, activations quantized at run time (ONNX Runtime dynamic quantization)."""

from __future__ import annotations

from kdtool.export.precisions.int8_calibrated import CalibratedTrtInt8
from kdtool.export.quantize import quantize_int8_dynamic


class Int8Dynamic(CalibratedTrtInt8):
    def bundle_graph(self, graph, final, config, calibration, *, fused):
        return quantize_int8_dynamic(graph, final, fused=fused, per_channel=config.per_channel,
                                     reduce_range=config.reduce_range)
