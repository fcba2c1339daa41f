"""``fp32``: the fused FP32 graph, held to the exactness tolerance against PyTorch."""

from kdtool.export.precisions.base import PrecisionExport


class Fp32(PrecisionExport):
    gates_bundle_parity = True
