"""``fp16``: FP16 weights and activations, LayerNorm / Pow / Softmax kept in FP32 (kdtool.export.fp16)."""

from __future__ import annotations

from kdtool.export.fp16 import convert_fp16
from kdtool.export.precisions.base import PrecisionExport


class Fp16(PrecisionExport):
    def bundle_graph(self, graph, final, config, calibration, *, fused):
        return convert_fp16(graph, final)

    def trt_graph(self, plain, dst, config, calibration):
        return {"precision": self.row.trt_precision, "form": "FP16 with Cast nodes", **convert_fp16(plain, dst)}
