"""Triton ``config.pbtxt`` from plain data: the protobuf text format of ``inference.ModelConfig``.

A config is a dict whose keys are ModelConfig field names; a list is a repeated field (one entry per
element), a dict a message, an :class:`Enum` a bare enum name (``KIND_CPU``), a bool ``true``/``false``.
Map fields (``parameters``, ``input_map``, ``output_map``) are lists of ``{"key": ..., "value": ...}``,
which is how the text format spells them. The tests parse every generated config with the
``ModelConfig`` message that ships in ``tritonclient`` (Triton's own schema) and load it in a real server.
"""

from __future__ import annotations

import json

from kdtool.errors import InputError

# the OIP datatypes (kdtool.serve.oip) and ONNX element types (bundle manifest) as config.pbtxt data types
CONFIG_DTYPES = {"BYTES": "TYPE_STRING", "INT64": "TYPE_INT64", "INT32": "TYPE_INT32", "FP32": "TYPE_FP32",
                 "FP16": "TYPE_FP16", "BOOL": "TYPE_BOOL"}
ONNX_TO_OIP = {"int64": "INT64", "int32": "INT32", "float": "FP32", "float16": "FP16", "bool": "BOOL"}


class Enum(str):
    """An enum value, written without quotes."""


def tensor(name: str, oip_dtype: str, dims: list[int]) -> dict:
    """One ``input``/``output`` entry: ``oip_dtype`` is an OIP datatype name (BYTES, INT64, FP32 ...)."""
    return {"name": name, "data_type": Enum(CONFIG_DTYPES[oip_dtype]), "dims": list(dims)}


def onnx_tensor(meta: dict, dims: list[int]) -> dict:
    """A tensor entry from a manifest ``inputs``/``outputs`` record (``{"name", "dtype": "int64"|"float"...}``)."""
    dtype = ONNX_TO_OIP.get(str(meta.get("dtype")))
    if dtype is None:
        raise InputError(f"bundle graph tensor {meta.get('name')!r} has ONNX type {meta.get('dtype')!r}, which the "
                         "Triton configs here do not map; use --layout python")
    return tensor(meta["name"], dtype, dims)


def parameters(values: dict[str, str]) -> list[dict]:
    """The ``parameters`` map: every value is a string, as Triton stores them."""
    return [{"key": k, "value": {"string_value": str(v)}} for k, v in values.items()]


def _scalar(value) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if any(ord(c) < 32 for c in text):
        raise InputError(f"config value {text[:60]!r} holds a control character; choose a path or name without one")
    return json.dumps(text, ensure_ascii=False)  # "..." with \" and \\ escaped: valid text-format string


def to_pbtxt(message: dict, indent: int = 0) -> str:
    """``message`` as protobuf text, two spaces per level."""
    pad = "  " * indent
    lines = []
    for key, value in message.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):
                lines.append(f"{pad}{key} {{")
                lines.append(to_pbtxt(item, indent + 1).rstrip("\n"))
                lines.append(f"{pad}}}")
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    return "\n".join(line for line in lines if line) + "\n"
