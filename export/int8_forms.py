"""How an INT8 bundle stores its weights, chosen for the target's integer arithmetic.

Every INT8 precision (dynamic, static, QAT) first writes full-range s8 weights: the form TensorRT,
ARM64 and x86 VNNI kernels multiply exactly. On an ``x86-avx2`` target (no VNNI) ONNX Runtime's
u8 x s8 kernel adds pairs of products into int16 and saturates, so for that target the export stores
the very same weights as u8 with their zero point moved by 128 (``w + 128``, zero point ``z + 128``):
the dequantized values are identical, and ONNX Runtime multiplies u8 x u8, which is exact on every x86
CPU, in any program that opens the graph (kdtool's engines also make s8 weights exact at run time:
:func:`kdtool.bundle.arithmetic.ort_exactness_config`). The other exact form on such a CPU, 7-bit
weights (``--reduce-range``), keeps the faster u8 x s8 kernel but halves the weights' resolution.

Which form an ``x86-avx2`` target gets was chosen by measurement: ``bench/int8_forms.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdtool.export.onnx_io import graph_constants

# op type -> (weight input, weight zero-point input): the integer products whose constant s8 weights meet
# u8 activations on ONNX Runtime's CPU kernels (the table of its Avx2WeightS8ToU8 transformer)
WEIGHT_SLOTS: dict[str, tuple[int, int]] = {
    "QAttention": (1, 7), "MatMulIntegerToFloat": (1, 5), "DynamicQuantizeMatMul": (1, 3), "QGemm": (3, 5),
    "MatMulInteger": (1, 3), "QLinearMatMul": (3, 5), "QLinearConv": (3, 5), "DequantizeLinear": (0, 2),
}
WEIGHT_FORMS = {
    "s8": "s8 weights, full range: exact on x86 VNNI, ARM64 and TensorRT; kdtool runs them exactly on x86 "
          "without VNNI too (ONNX Runtime's u8 x u8 kernels, session.x64quantprecision)",
    "s7": "s8 weights within [-64, 64] (--reduce-range): exact on every CPU with the fast u8 x s8 kernel, "
          "at half the weights' resolution",
    "u8": "u8 weights, zero point moved by 128 (the same values as s8): exact on every CPU in any ONNX Runtime "
          "(u8 x u8 kernels), the x86-avx2 form",
}
# the form an export for each arithmetic class writes (kdtool.bundle.arithmetic.ARITHMETIC); bench/int8_forms.py
TARGET_FORMS = {"x86-avx2": "u8", "x86-vnni": "s8", "arm64": "s8", "tensorrt": "s8"}


def weight_form(target: str, *, reduce_range: bool) -> str:
    """The form an INT8 export for ``target`` writes: 7-bit when asked for, else the target's."""
    return "s7" if reduce_range else TARGET_FORMS.get(target, "s8")


def to_u8_weights(path: Path) -> dict:
    """Rewrite the graph at ``path`` so that every constant s8 weight of an integer product is u8.

    ``w`` becomes ``w + 128`` and its zero point ``z + 128`` (128 where there was none, shaped like the
    scale), so every dequantized value and integer product stays the same. Constants may be initializers
    or ``Constant`` nodes (the TorchScript exporter writes zero points as such). Returns what was converted.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    consts = graph_constants(graph)
    twins: dict[str, str] = {}  # s8 constant -> its u8 initializer

    def twin(name: str, values: np.ndarray) -> str:
        if name not in twins:
            twins[name] = f"{name}_u8"
            graph.initializer.append(numpy_helper.from_array((values.astype(np.int16) + 128).astype(np.uint8), twins[name]))
        return twins[name]

    nodes = 0
    for node in graph.node:
        slots = WEIGHT_SLOTS.get(node.op_type)
        if slots is None or len(node.input) <= slots[0]:
            continue
        w_idx, zp_idx = slots
        weight = consts.get(node.input[w_idx])
        if weight is None or weight.dtype != np.int8:
            continue
        zp_name = node.input[zp_idx] if len(node.input) > zp_idx else ""
        zp = consts.get(zp_name) if zp_name else None
        if zp_name and (zp is None or zp.dtype != np.int8):
            continue  # a zero point computed at run time: leave the node as it is
        if zp is None:  # none means 0: a u8 zero point of 128, shaped like a DequantizeLinear's scale
            scale = consts.get(node.input[1]) if node.op_type == "DequantizeLinear" and len(node.input) > 1 else None
            zp_name, zp = f"{node.input[w_idx]}_zero_point", np.zeros(() if scale is None else scale.shape, np.int8)
        node.input[w_idx] = twin(node.input[w_idx], weight)
        while len(node.input) <= zp_idx:
            node.input.append("")
        node.input[zp_idx] = twin(zp_name, zp)
        nodes += 1
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    for const in [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in used]:
        graph.node.remove(const)
    onnx.save_model(model, str(path))
    return {"weights": "u8", "u8_weight_nodes": nodes, "u8_constants": len(twins)}


def count_weight_forms(path: Path) -> dict:
    """How many constant weights of integer products are s8, s8 within 7 bits, and u8 (a graph's INT8 form)."""
    import onnx

    consts = graph_constants(onnx.load(str(path)).graph)
    counts = {"s8": 0, "s7": 0, "u8": 0}
    seen = set()
    for node in onnx.load(str(path)).graph.node:
        slots = WEIGHT_SLOTS.get(node.op_type)
        name = node.input[slots[0]] if slots is not None and len(node.input) > slots[0] else None
        if name is None or name not in consts or name in seen:
            continue
        seen.add(name)
        values = consts[name]
        if values.dtype == np.uint8:
            counts["u8"] += 1
        elif values.dtype == np.int8:
            counts["s7" if values.size and np.abs(values.astype(np.int16)).max() <= 64 else "s8"] += 1
    return counts
