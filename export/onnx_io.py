"""Reading and copying ONNX files: the graph's inputs and outputs for the manifest, and a copy that keeps large
graphs in external data."""

from __future__ import annotations

from pathlib import Path


def onnx_io(path: Path) -> tuple[list[dict], list[dict]]:
    """The graph's inputs (initializers aside) and outputs: name, dtype and shape (symbolic dims by name)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}

    def describe(v):
        t = v.type.tensor_type
        return {"name": v.name, "dtype": onnx.TensorProto.DataType.Name(t.elem_type).lower(),
                "shape": [d.dim_param or d.dim_value for d in t.shape.dim]}

    return [describe(v) for v in graph.input if v.name not in inits], [describe(v) for v in graph.output]


def copy_onnx(src: Path, dst: Path) -> None:
    """Copy an ONNX graph, with its weights as external data beside it when it nears protobuf's 2 GB limit."""
    import onnx

    model = onnx.load(str(src))
    onnx.save_model(model, str(dst), save_as_external_data=model.ByteSize() > (1 << 31) - (1 << 26),
                    location=dst.name + ".data")


def graph_constants(graph) -> dict:
    """Every constant of ``graph`` by name: its initializers and the outputs of its ``Constant`` nodes (numpy arrays)."""
    from onnx import numpy_helper

    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(a.t)
    return values
