"""Checking a parsed recipe: known keys, values coerced to the types of their config fields, paths made absolute.

Paths in a recipe file are relative to the file; paths given with ``--override`` are relative to
the current directory. A model reference is a directory, ``package:NAME/sub/dir`` (a directory
inside an installed Python package), or a Hugging Face hub id (fetched when the stage runs).
"""

from __future__ import annotations

import functools
import operator
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, StrictBool, StrictInt, TypeAdapter, ValidationError

from kdtool.errors import InputError, quote
from kdtool.recipes.sections import MODEL, MODEL_KEYS, PATH, REQUIRED, SECTIONS, TOP_LEVEL


def _type_name(tp) -> str:
    if tp is PATH:
        return "a path"
    if tp is MODEL:
        return "a model directory, package:NAME/dir or hub id"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _not_bool(value):
    if isinstance(value, bool):  # YAML's yes/true is not a number
        raise ValueError("a boolean is not a number")
    return value


def _text(value):
    if not isinstance(value, (str, Path)) or not str(value):
        raise ValueError("not a path")
    return str(value)


# each type a recipe key may have, as pydantic validates it: ints and booleans strictly, floats from numbers or
# numeric text (YAML 1.1 reads 3e-5 as a string) and finite, text from text or numbers, paths as text
_PATH_TEXT = Annotated[str, BeforeValidator(_text)]
_LEAVES = {int: StrictInt, bool: StrictBool, float: Annotated[float, BeforeValidator(_not_bool)],
           PATH: _PATH_TEXT, MODEL: _PATH_TEXT, Path: _PATH_TEXT}
_RULES = ConfigDict(allow_inf_nan=False, coerce_numbers_to_str=True)


def _schema(tp):
    """``tp`` (a config field's annotation, or PATH/MODEL) with its leaves as :data:`_LEAVES` validates them."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return functools.reduce(operator.or_, (_schema(a) for a in typing.get_args(tp)))
    if origin in (list, tuple) or tp in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return list[_schema(args[0])] if args else list
    return _LEAVES.get(tp, tp)


@functools.cache
def _validator(tp) -> TypeAdapter:
    return TypeAdapter(_schema(tp), config=None if tp in (Any, dict) else _RULES)


def _is_path_type(tp) -> bool:
    if tp in (PATH, Path):
        return True
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and any(
        a in (PATH, Path) for a in typing.get_args(tp))


def resolve_path(value: str, base: Path) -> str:
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def resolve_model_ref(value: str, base: Path) -> str:
    """A model reference made absolute where it is a path; ``package:``, preset names and hub ids stay as they are."""
    if value.startswith("package:"):
        return value
    p = Path(value).expanduser()
    if p.is_absolute():
        return str(p)
    if (base / p).exists() or value.startswith("."):
        return str((base / p).resolve())
    return value


def check_raw(raw: dict, origin_of: Callable[[str], str]) -> dict:
    """The checked, coerced recipe dict; an InputError naming the first bad key."""
    out: dict = {}
    for key, value in raw.items():
        if key not in TOP_LEVEL:
            raise InputError(f"unknown recipe key {quote(key)}{origin_of(key)}; known keys: {', '.join(TOP_LEVEL)}")
        if key in SECTIONS:
            if value is None:
                continue  # "finetune:" with nothing under it, or --override finetune=null: no such stage
            if not isinstance(value, dict):
                raise InputError(f"recipe section {quote(key)}{origin_of(key)} must be a mapping of keys, got {quote(value)}")
            known = SECTIONS[key].key_types()
            section = {}
            for k, v in value.items():
                dotted = f"{key}.{k}"
                if k not in known:
                    raise InputError(f"unknown recipe key {quote(dotted)}{origin_of(dotted)}; known keys of {key}: "
                                     f"{', '.join(sorted(known))}")
                tp = MODEL if (key, k) in MODEL_KEYS else known[k]
                try:
                    section[k] = _validator(tp).validate_python(v)
                except ValidationError:
                    raise InputError(f"recipe key {dotted}{origin_of(dotted)} must be {_type_name(tp)}, "
                                     f"got {quote(v)}") from None
            out[key] = section
        else:
            if not isinstance(value, str):
                raise InputError(f"recipe key {quote(key)}{origin_of(key)} must be a string, got {quote(value)}")
            out[key] = value
    for key in REQUIRED:
        if key not in out:
            raise InputError(f"the recipe has no {quote(key)}; a recipe needs at least: {', '.join(REQUIRED)}")
    if "train" not in out["data"]:
        raise InputError("the recipe's data section needs 'train': a SQuAD JSON file (or a pool to split)")
    if "finetune" in out and "model" not in out["finetune"]:
        raise InputError("the recipe's finetune section needs 'model': the encoder to fine-tune into the teacher")
    if "finetune" not in out and "teacher" not in out["distill"]:
        raise InputError("the recipe's distill section needs 'teacher' (or add a finetune section that makes one)")
    return out


def resolve_paths(checked: dict, base: Path, only: set[str] | None = None) -> None:
    """Make the path and model values of ``checked`` absolute against ``base`` (only the dotted keys in ``only``)."""
    for name, section in checked.items():
        if name not in SECTIONS:
            continue
        known = SECTIONS[name].key_types()
        for k, v in section.items():
            dotted = f"{name}.{k}"
            if v is None or (only is not None and dotted not in only):
                continue
            if (name, k) in MODEL_KEYS:
                section[k] = resolve_model_ref(v, base)
            elif _is_path_type(known[k]):
                section[k] = resolve_path(v, base)


def recipe_paths(sections: dict) -> list[tuple[str, str]]:
    """``(dotted key, path)`` of every file or model directory a checked recipe names that exists here."""
    out = []
    for name, section in sections.items():
        known = SECTIONS[name].key_types() if name in SECTIONS else {}
        for k, v in (section or {}).items():
            if isinstance(v, str) and ((name, k) in MODEL_KEYS or _is_path_type(known.get(k))) and Path(v).exists():
                out.append((f"{name}.{k}", v))
    return out
