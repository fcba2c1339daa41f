"""``int8-qat``: a quantization-aware-trained model (kdtool.models.qat) to an explicit-precision QDQ graph.

The fake-quantized PyTorch model is exported as it is: Model Optimizer's quantizers export
themselves as ``QuantizeLinear``/``DequantizeLinear`` pairs with the QAT model's scales (zero point 0,
INT8, per-channel on weights), through the TorchScript ONNX exporter (modelopt registers its
symbolic functions there). The one graph serves both runtimes:

- ONNX Runtime CPU fuses each ``DQ -> MatMul <- DQ`` into an integer matrix product (QLinearMatMul /
  MatMulIntegerToFloat), including ``QK^T`` and ``PV``. On x86 it first rewrites the INT8 activation
  pairs to UINT8 with zero point 128 (its QDQS8ToU8 transformer: u8 x s8 is what the AVX2/VNNI kernels
  multiply); the rewrite is exact because both encode the same 256 levels. The session option
  ``session.qdqisint8allowed=1`` keeps s8 x s8 instead; ``bench/latency.py`` measures both.
- TensorRT's explicit quantization reads the same symmetric Q/DQ placement (no calibrator).

No ORT transformer fusion: its Attention/SkipLayerNorm fusions do not match a QDQ graph.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np

from kdtool.data import MODEL_INPUTS
from kdtool.engines.ort import session_options
from kdtool.errors import IntegrityError, KdtoolError
from kdtool.export.onnx_io import graph_constants

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def _wrapper(model, names, outputs):
    import torch

    class Positional(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *args):
            out = self.model(**dict(zip(names, args, strict=True)))
            return tuple(getattr(out, o) for o in outputs)

    return Positional().eval()  # torch.onnx.export restores the wrapper's mode, recursively, when it is done


def export_qat_onnx(model, path: Path, sample: dict[str, np.ndarray], *, opset: int,
                    outputs=("start_logits", "end_logits")) -> Path:
    """Write the fake-quantized ``model`` to ``path`` as a QDQ graph with Optimum's input/output names."""
    import torch

    accepted = set(model.forward.__code__.co_varnames)
    names = [n for n in MODEL_INPUTS if n in sample and n in accepted]
    # trace with a padded row: HF's SDPA mask helper returns None for a batch without padding, and a trace
    # of that drops the attention mask from the graph altogether
    traced = {n: np.concatenate([sample[n][:1], sample[n][:1]]) for n in names}
    traced["attention_mask"][1, traced["attention_mask"].shape[1] // 2:] = 0
    args = tuple(torch.from_numpy(traced[n]) for n in names)
    axes = {n: {0: "batch_size", 1: "sequence_length"} for n in (*names, *outputs)}
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings(), \
                contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(_wrapper(model, names, outputs), args, str(path), input_names=names,
                              output_names=list(outputs), dynamic_axes=axes, opset_version=max(opset, 13),
                              do_constant_folding=True, dynamo=False)
    except (RuntimeError, ValueError, TypeError) as err:
        raise KdtoolError(f"QDQ export of the QAT model failed: {str(err).splitlines()[0][:200]}") from None
    fold_weight_quantization(path)
    return path


def fold_weight_quantization(path: Path) -> int:
    """Replace each ``QuantizeLinear`` of a constant weight by its INT8 result (a 4x smaller initializer).

    The exporter writes weights as FP32 constants behind ``QuantizeLinear``; ``DequantizeLinear`` of an INT8
    initializer is the form TensorRT and ORT expect for weights, and the values are the same (round half to
    even, saturate to [-128, 127], as ``QuantizeLinear`` does). Returns how many weights were folded.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    consts = graph_constants(graph)
    inits = {i.name: i for i in graph.initializer}
    folded = []
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] not in inits or node.input[1] not in consts:
            continue
        w = numpy_helper.to_array(inits[node.input[0]]).astype(np.float32)
        scale = consts[node.input[1]].astype(np.float32)
        if scale.ndim == 1 and scale.size > 1:
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % w.ndim
            scale = scale.reshape([-1 if d == axis else 1 for d in range(w.ndim)])
        q = np.clip(np.rint(w / scale), -128, 127).astype(np.int8)
        graph.initializer.append(numpy_helper.from_array(q, node.output[0]))
        folded.append(node)
    for node in folded:
        graph.node.remove(node)
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    onnx.save_model(model, str(path))
    return len(folded)


def qdq_summary(path: Path) -> dict:
    """What TensorRT's explicit quantization needs, checked on the graph: every Q/DQ INT8, zero point 0.

    Also counts the matrix products whose two inputs both come from a DequantizeLinear (the ones ORT
    runs as integer products), and among them those of two activations (QK^T and PV).
    """
    import onnx

    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    graph = model.graph
    consts = graph_constants(graph)
    producer = {o: n for n in graph.node for o in n.output}
    qdq = [n for n in graph.node if n.op_type in QDQ_OPS]
    bad = []
    per_channel = 0
    for n in qdq:
        zp = consts.get(n.input[2]) if len(n.input) > 2 else None
        if zp is None or zp.dtype != np.int8 or np.any(zp != 0):
            bad.append(n.name or n.output[0])
        scale = consts.get(n.input[1])
        per_channel += int(scale is not None and scale.size > 1)
    int8_mm, attention_mm = 0, 0
    for n in graph.node:
        if n.op_type != "MatMul":
            continue
        srcs = [_through_layout(producer.get(i), producer) for i in n.input]
        if all(s is not None and s.op_type == "DequantizeLinear" for s in srcs):
            int8_mm += 1
            # a weight's DQ reads a constant (or a Q of one); an activation's DQ reads a runtime Q
            attention_mm += all(s.input[0] not in consts and not _is_const_q(producer.get(s.input[0]), consts)
                                for s in srcs)
    if bad:
        raise IntegrityError(f"{len(bad)} Q/DQ nodes are not symmetric INT8 (zero point 0), e.g. {bad[0]}; "
                             "TensorRT's explicit quantization needs zero point 0")
    return {"quantize_linear": sum(n.op_type == "QuantizeLinear" for n in qdq),
            "dequantize_linear": sum(n.op_type == "DequantizeLinear" for n in qdq),
            "per_channel_nodes": per_channel, "zero_points": "all 0 (int8)", "symmetric": True,
            "int8_matmuls": int8_mm, "int8_attention_matmuls": attention_mm, "onnx_checker": "passed"}


def _through_layout(node, producer):
    """The node behind Transpose/Reshape (a Linear's weight is DQ -> Transpose -> MatMul in the export)."""
    while node is not None and node.op_type in ("Transpose", "Reshape"):
        node = producer.get(node.input[0])
    return node


def ort_integer_kernels(path: Path, *, int8_activations: bool = False) -> dict:
    """Matrix products of ORT CPU's optimized graph: how many run as integer kernels, how many stay float."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="kdtool-ort-") as tmp:
        opts = ort_session_options(int8_activations)
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        ops = [n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node]
    integer = ("MatMulIntegerToFloat", "QLinearMatMul", "MatMulInteger", "DynamicQuantizeMatMul", "QGemm")
    return {"integer_matmuls": sum(o in integer for o in ops), "float_matmuls": sum(o in ("MatMul", "Gemm") for o in ops),
            "by_op": {o: ops.count(o) for o in integer if o in ops}}


def _is_const_q(node, consts) -> bool:
    return node is not None and node.op_type == "QuantizeLinear" and node.input[0] in consts


def ort_session_options(int8_activations: bool):
    """ORT CPU options for a QDQ graph: ``int8_activations`` keeps s8 x s8, else ORT's exact u8 rewrite."""
    return session_options(int8_activations=int8_activations)
