"""Check an InferenceService YAML against the kserve SDK's models: every field known, every value of its type.

    python docs/kserve/check_inferenceservice.py docs/kserve/inferenceservice-triton.yaml

The SDK's own deserializer drops fields it does not know; this walk does not: a misspelt field
(``minReplica``), a wrong type (``minReplicas: "1"``) or a nested field in the wrong place is an error
naming its path. Needs ``pip install kserve pyyaml`` (the ``docs`` extra; kserve pins psutil<6, so use an
environment of its own). Exits 0 and prints ``ok`` when the document is valid.
"""

from __future__ import annotations

import re
import sys

PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object}


def model_class(name: str):
    import kserve.models
    import kubernetes.client.models

    for module in (kserve.models, kubernetes.client.models):
        if hasattr(module, name):
            return getattr(module, name)
    raise LookupError(f"no model class {name}")


def check(value, type_name: str, path: str) -> list[str]:
    """Errors of ``value`` against the OpenAPI type ``type_name`` (``V1beta1...``, ``list[X]``, ``dict(str, X)``)."""
    if value is None:
        return []
    if m := re.fullmatch(r"[lL]ist\[(.+)\]", type_name):
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        return [e for i, v in enumerate(value) for e in check(v, m.group(1), f"{path}[{i}]")]
    if m := re.fullmatch(r"dict\(str, (.+)\)|Dict\[str, (.+)\]", type_name):
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping, got {type(value).__name__}"]
        return [e for k, v in value.items() for e in check(v, m.group(1) or m.group(2), f"{path}.{k}")]
    if type_name in PRIMITIVES:
        ok = isinstance(value, PRIMITIVES[type_name]) and not (type_name == "int" and isinstance(value, bool))
        return [] if ok else [f"{path}: expected {type_name}, got {type(value).__name__} {value!r}"]
    if type_name in ("ResourceQuantity", "IntOrString") or type_name.endswith("Quantity"):
        return [] if isinstance(value, (str, int, float)) else [f"{path}: expected a quantity, got {value!r}"]
    cls = model_class(type_name)
    if not isinstance(value, dict):
        return [f"{path}: expected a {type_name} mapping, got {type(value).__name__}"]
    fields = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    errors = [f"{path}.{k}: not a field of {type_name}" for k in value if k not in fields]
    for k, v in value.items():
        if k in fields:
            errors += check(v, cls.openapi_types[fields[k]], f"{path}.{k}")
    return errors


def build(value, type_name: str):
    """The SDK object for a value that :func:`check` accepted: each model's constructor runs its own validation."""
    if value is None or type_name in PRIMITIVES or not type_name[:1].isupper() or "[" in type_name:
        if m := re.fullmatch(r"[lL]ist\[(.+)\]", type_name):
            return [build(v, m.group(1)) for v in value]
        return value
    cls = model_class(type_name)
    fields = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    return cls(**{fields[k]: build(v, cls.openapi_types[fields[k]]) for k, v in value.items()})


def check_document(doc: dict) -> list[str]:
    """Errors of one InferenceService document; the document is then built from the SDK's model classes."""
    errors = check(doc, "V1beta1InferenceService", "InferenceService")
    if doc.get("apiVersion") != "serving.kserve.io/v1beta1" or doc.get("kind") != "InferenceService":
        errors.append("apiVersion/kind must be serving.kserve.io/v1beta1 InferenceService")
    if not errors:
        try:
            built = build(doc, "V1beta1InferenceService")
        except (TypeError, ValueError) as err:
            return [f"InferenceService: {err}"]
        if built.spec is None or built.spec.predictor is None:
            errors.append("InferenceService.spec.predictor is required")
    return errors


def main(paths: list[str]) -> int:
    import yaml

    bad = 0
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            for doc in yaml.safe_load_all(fh):
                errors = check_document(doc)
                for e in errors:
                    print(f"{path}: {e}", file=sys.stderr)
                bad += bool(errors)
    print("ok" if not bad else f"{bad} invalid document(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
