"""FP16 conversion that keeps overflow-prone ops in FP32.

BERT/RoBERTa activations overflow FP16 in LayerNorm's mean/variance (and in Pow when LayerNorm
is decomposed), so those ops stay in FP32 with Cast nodes around them; inputs and outputs keep
their types (int64 ids in, float32 logits out).
"""

from __future__ import annotations

from pathlib import Path

from kdtool.errors import KdtoolError

FP32_OPS = ["LayerNormalization", "SkipLayerNormalization", "EmbedLayerNormalization", "SimplifiedLayerNormalization",
            "SkipSimplifiedLayerNormalization", "Pow", "ReduceMean", "Sqrt", "Softmax", "Erf", "Range", "CumSum"]


def convert_fp16(src: Path, dst: Path) -> dict:
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    # OnnxModel's converter runs ORT's symbolic shape inference first, which knows the fused contrib
    # ops; without it, blocked nodes fed by converted ones get no Cast back to FP32.
    model = OnnxModel(onnx.load(str(src)))
    try:
        model.convert_float_to_float16(use_symbolic_shape_infer=True, keep_io_types=True, op_block_list=FP32_OPS)
    except Exception as err:
        raise KdtoolError(f"FP16 conversion failed: {type(err).__name__}: {str(err).splitlines()[0][:160]}") from None
    _drop_duplicate_casts(model.model)
    model.save_model_to_file(str(dst), use_external_data_format=model.model.ByteSize() > (1 << 31) - (1 << 26))
    return {"mode": "fp16", "kept_fp32_ops": FP32_OPS, "io_types": "kept (float32 logits)",
            "converter": "onnxruntime.transformers OnnxModel.convert_float_to_float16"}


def _drop_duplicate_casts(model) -> int:
    """Remove repeated identical Cast nodes the converter adds when one tensor feeds several kept-FP32 ops.

    The converter names the cast output after its input, so two consumers give two nodes writing
    one name: ONNX Runtime tolerates it, the ONNX checker and TensorRT do not (graphs must be SSA).
    """
    seen, drop = {}, []
    for node in model.graph.node:
        if node.op_type == "Cast" and len(node.output) == 1:
            key = node.output[0]
            sig = (tuple(node.input), tuple((a.name, a.i) for a in node.attribute))
            if key in seen and seen[key] == sig:
                drop.append(node)
            else:
                seen.setdefault(key, sig)
    for node in drop:
        model.graph.node.remove(node)
    return len(drop)


def fp32_ops_in(path: Path) -> dict[str, str]:
    """``{node name: element type of its first float input}`` for the ops that must stay FP32 (for tests/reports)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    types = {v.name: v.type.tensor_type.elem_type for v in (*model.graph.value_info, *model.graph.input, *model.graph.output)}
    types.update({i.name: i.data_type for i in model.graph.initializer})
    out = {}
    for node in model.graph.node:
        if node.op_type in FP32_OPS and node.input and node.input[0] in types:
            out[node.name or node.op_type] = onnx.TensorProto.DataType.Name(types[node.input[0]])
    return out
