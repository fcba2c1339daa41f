"""The types of ``manifest.json``, checked before any field is used.

A manifest is data from disk: a list where a string belongs must be "bad bundle" (exit 2), not a
TypeError deep in a loader ("internal error"). Only types are checked here, plus the few values
every loader depends on (file sizes, sha256 digests); names such as the precision are free text so
that a newer precision (``int8-qat``, say) needs no schema change.
"""

from __future__ import annotations

import re
from pathlib import Path

from kdtool.bundle.manifest import SCHEMA_VERSION, check_member_names
from kdtool.errors import InputError

_SHA256 = re.compile(r"[0-9a-f]{64}")
_INT = (int,)

# field -> (allowed types, required); None stands for JSON null
FIELDS: dict[str, tuple[tuple, bool]] = {
    "schema_version": (_INT, True),
    "files": ((dict,), True),
    "model": ((str,), True),
    "kdtool_version": ((str,), False),
    "created": ((str,), False),
    "task": ((str,), False),
    "precision": ((str,), False),
    "opset": ((int, type(None)), False),
    "max_seq_length": ((int, type(None)), False),
    "num_parameters": ((int, type(None)), False),
    "inputs": ((list, dict), False),
    "outputs": ((list, dict), False),
    "trt_onnx": ((str, type(None)), False),
    "engine": ((str, type(None)), False),
    "timing_cache": ((str, type(None)), False),
    "device_profile": ((dict, type(None)), False),
    "tensorrt": ((dict, type(None)), False),
    "parity": ((dict, type(None)), False),
    "source": ((dict, type(None)), False),
    "fusion": ((dict, type(None)), False),
    "quantization": ((dict, type(None)), False),
    "int8": ((dict, type(None)), False),  # the INT8 arithmetic class exported for, and the weights' form
    "certified_on": ((dict, type(None)), False),  # the machine the parity checks and the self-test ran on
    "self_test": ((dict, type(None)), False),  # kdtool.bundle.selftest: its file, graphs and bounds
}


def _type_names(types: tuple) -> str:
    names = {int: "an integer", str: "a string", dict: "an object", list: "a list", type(None): "null"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def _json_type(value) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)


def check_manifest(manifest, path: Path) -> dict:
    """Raise InputError (exit 2) naming the first field of the wrong type; return ``manifest``."""

    def bad(field: str, want: str, value) -> InputError:
        return InputError(f"{path}: field {field!r} must be {want}, got {_json_type(value)}; "
                          "the manifest is damaged, export the bundle again")

    if not isinstance(manifest, dict):
        raise bad("(top level)", "an object", manifest)
    for field, (types, required) in FIELDS.items():
        if field not in manifest:
            if required:
                raise InputError(f"{path}: required field {field!r} is missing; export the bundle again")
            continue
        value = manifest[field]
        if isinstance(value, bool) or not isinstance(value, types):
            raise bad(field, _type_names(types), value)

    if manifest["schema_version"] > SCHEMA_VERSION:
        raise InputError(f"{path}: bundle schema {manifest['schema_version']} is newer than this kdtool understands "
                         f"({SCHEMA_VERSION}); upgrade kdtool")
    check_member_names(manifest["files"], path)
    for rel, meta in manifest["files"].items():
        where = f"files[{rel[:60]!r}]"
        if not isinstance(meta, dict):
            raise bad(where, "an object", meta)
        size, digest = meta.get("bytes"), meta.get("sha256")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise bad(f"{where}.bytes", "a non-negative integer", size)
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise InputError(f"{path}: field {where}.sha256 must be 64 lowercase hex digits; "
                             "the manifest is damaged, export the bundle again")
    return manifest
