"""Recipes: one YAML file that runs data -> (finetune) -> distill -> export -> validate -> profile.

A recipe is data, not code. Each stage section holds the fields of the library config that the
stage builds (``distill:`` takes :class:`~kdtool.distill.DistillConfig` fields, ``export:`` takes
:class:`~kdtool.export.config.ExportConfig` fields, ...), minus the ones the runner fills in itself
(input and output paths, the language, the window sizes of ``features:``), plus a few recipe keys
listed in :data:`SECTIONS`. So the known keys of a section are read from its config dataclass and
can never drift from what the library accepts; an unknown key is refused with one line naming it
and the known ones.

Paths in a recipe file are relative to the file; paths given with ``--override`` are relative to
the current directory. A model reference is a directory, ``package:NAME/sub/dir`` (a directory
inside an installed Python package), or a Hugging Face hub id (fetched when the stage runs).

Recipe lookup: ``kdtool run NAME`` (no ``/`` and no ``.yaml``) reads ``NAME.yaml`` from the
directories in ``$KDTOOL_RECIPES`` and then from the repository's ``recipes/`` folder next to the
installed ``kdtool`` sources (an editable install, which is what ``make setup`` makes). Anything
else is a path.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import importlib.util
import math
import os
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kdtool.errors import InputError, quote

REPO_RECIPES = Path(__file__).resolve().parent.parent / "recipes"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class PATH:
    """Marker type of a recipe-only key that holds a file path."""


class MODEL:
    """Marker type of a key that holds a model reference (directory, ``package:``, hub id, preset)."""


# fields of TrainConfig/DistillConfig the runner fills from the run directory or other sections
TRAIN_FILLED = {"train_file", "dev_file", "output", "work_dir", "resume", "overwrite", "stop_after", "progress", "lang",
                "max_length", "doc_stride", "max_query_length"}


@dataclass(frozen=True)
class Section:
    """The keys one recipe section accepts.

    ``config`` names the dataclass whose fields are accepted (``module:Class``), minus ``filled``;
    ``extra`` adds recipe-only keys with their types; ``rename`` maps recipe keys to config fields.
    """

    about: str
    config: str | None = None
    filled: frozenset = frozenset()
    extra: dict = field(default_factory=dict)
    rename: dict = field(default_factory=dict)  # recipe key -> config field

    def config_class(self):
        if self.config is None:
            return None
        module, name = self.config.split(":")
        return getattr(importlib.import_module(module), name)

    def key_types(self) -> dict[str, Any]:
        """Every key this section accepts and its type (a typing annotation or PATH/MODEL)."""
        types_: dict[str, Any] = {}
        cls = self.config_class()
        if cls is not None:
            hints = typing.get_type_hints(cls)
            back = {v: k for k, v in self.rename.items()}
            for f in dataclasses.fields(cls):
                if f.name not in self.filled:
                    types_[back.get(f.name, f.name)] = hints[f.name]
        types_.update(self.extra)
        return types_


SECTIONS: dict[str, Section] = {
    "data": Section("SQuAD files; without dev, the train pool is split by article",
                    extra={"train": PATH, "dev": PATH | None, "dev_fraction": float, "split_seed": int, "lang": str}),
    "features": Section("windows for training, evaluation and export",
                        config="kdtool.data.features:FeatureConfig"),
    "finetune": Section("fine-tune MODEL on the train split into the teacher (optional stage)",
                        config="kdtool.distill.config:TrainConfig", filled=frozenset(TRAIN_FILLED)),
    "distill": Section("TinyBERT distillation of the teacher into the student",
                       config="kdtool.distill.config:DistillConfig", filled=frozenset(TRAIN_FILLED),
                       rename={"teacher": "model"}),
    "prune": Section("structured pruning of the student to a budget, recovered from the teacher (optional stage)",
                     config="kdtool.prune.config:PruneConfig",
                     filled=frozenset({"model", "output", "train_file", "dev_file", "resume", "overwrite", "stop_after",
                                       "progress"})),
    "export": Section("one bundle per precision of `precisions`",
                      config="kdtool.export.config:ExportConfig",
                      filled=frozenset({"model_dir", "output", "precision", "overwrite", "calibration_data"}),
                      extra={"precisions": list[str], "calibration": str | None}),
    "validate": Section("F1/EM of teacher, student and bundles on the dev split",
                        config="kdtool.validate:ValidateConfig",
                        filled=frozenset({"models", "data", "lang", "features"}),
                        extra={"reference": str}),
    "profile": Section("latency of teacher, student and bundles; speed-ups against the teacher",
                       config="kdtool.profiles.profiler:ProfileConfig", filled=frozenset({"models", "data"}),
                       extra={"data": str | None}),
}
TOP_LEVEL = {"name": str, "description": str, **{k: dict for k in SECTIONS}}
REQUIRED = ("name", "data", "distill")
MODEL_KEYS = {("finetune", "model"), ("distill", "teacher"), ("distill", "student"), ("prune", "teacher")}


# ---------------------------------------------------------------------------------------------
# finding and reading


def recipe_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("KDTOOL_RECIPES", "").split(os.pathsep) if p]
    return dirs + [REPO_RECIPES]


def available_recipes() -> list[str]:
    names = set()
    for d in recipe_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def find_recipe(spec: str) -> Path:
    """The recipe file for a path or a bare name (see the module docstring)."""
    p = Path(spec)
    if p.suffix in (".yaml", ".yml") or "/" in spec or os.sep in spec:
        if not p.is_file():
            raise InputError(f"recipe not found: {spec}")
        return p
    for d in recipe_dirs():
        for suffix in (".yaml", ".yml"):
            if (d / f"{spec}{suffix}").is_file():
                return d / f"{spec}{suffix}"
    known = ", ".join(available_recipes()) or "none found"
    raise InputError(f"no recipe named {quote(spec)}; known recipes: {known} (or give a path to a .yaml file)")


MAX_RECIPE_BYTES = 1 << 20  # a recipe is a page of settings; anything larger is not one


def _safe_yaml(text: str):
    """``yaml.safe_load`` without aliases: ``*name`` lets a few hundred bytes expand into gigabytes."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                raise yaml.composer.ComposerError(None, None, "YAML aliases (*name) are not allowed in recipes; "
                                                  "write the value out", self.peek_event().start_mark)
            return super().compose_node(parent, index)

    loader = NoAliasLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _read_yaml(path: Path) -> dict:
    import yaml

    from kdtool.errors import require_file

    require_file(path, "recipe", max_bytes=MAX_RECIPE_BYTES)
    try:
        obj = _safe_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise InputError(f"{path}: not valid YAML{where}: {getattr(err, 'problem', None) or err}") from None
    if not isinstance(obj, dict):
        raise InputError(f"{path}: a recipe is a YAML mapping of sections (name, data, distill, ...)")
    return obj


# ---------------------------------------------------------------------------------------------
# overrides


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], value as YAML reads it: ``3`` int, ``[1, 2]`` list, ``null`` None)."""
    import yaml

    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise InputError(f"--override {quote(text)}: expected KEY=VALUE with a dotted key, e.g. distill.epochs=3")
    try:
        value = _safe_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # not YAML: take the text as it is
    return key.strip().split("."), value


def apply_override(raw: dict, keys: list[str], value: Any, text: str) -> None:
    node = raw
    for depth, k in enumerate(keys[:-1]):
        if node.get(k) is None:
            node[k] = {}
        if not isinstance(node[k], dict):
            raise InputError(f"--override {text}: {'.'.join(keys[:depth + 1])} is not a section")
        node = node[k]
    node[keys[-1]] = value


# ---------------------------------------------------------------------------------------------
# checking values


def _type_name(tp) -> str:
    if tp is PATH:
        return "a path"
    if tp is MODEL:
        return "a model directory, package:NAME/dir or hub id"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value, tp):
    """``value`` as type ``tp``, or raise ValueError. YAML reads ``3e-5`` as a string: a float field takes it."""
    if tp is Any or tp is dict:
        return value
    if tp in (PATH, MODEL):
        if isinstance(value, (str, Path)) and str(value):
            return str(value)
        raise ValueError
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ValueError
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg)
            except ValueError:
                continue
        raise ValueError
    if tp is type(None):
        if value is None:
            return None
        raise ValueError
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return [_coerce(v, args[0]) if args else v for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            number = float(value)  # ValueError when it is not a number
        else:
            raise ValueError
        if not math.isfinite(number):
            raise ValueError  # .nan / .inf: a training setting must be a number
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError
    if tp is Path:
        if isinstance(value, (str, Path)):
            return str(value)
        raise ValueError
    return value


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


def _check(raw: dict, origin_of: Callable[[str], str]) -> dict:
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
                    section[k] = _coerce(v, tp)
                except ValueError:
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


def _resolve_paths(checked: dict, base: Path, only: set[str] | None = None) -> None:
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


# ---------------------------------------------------------------------------------------------
# the recipe


STAGE_ORDER = ("data", "finetune", "distill", "prune", "export", "validate", "profile", "report")


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    source: str  # the file it was read from, or "<embedded>"
    sections: dict  # checked sections (data, features, finetune, ...), paths absolute
    overrides: tuple[str, ...] = ()

    def section(self, name: str) -> dict:
        return dict(self.sections.get(name) or {})

    def has(self, name: str) -> bool:
        return name in self.sections

    @property
    def stages(self) -> list[str]:
        """The stages this recipe runs, in order."""
        optional = {"finetune", "prune", "export", "validate", "profile"}
        return [s for s in STAGE_ORDER if s not in optional or self.has(s)]

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, **copy.deepcopy(self.sections)}

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


def parse_recipe(raw: dict, *, base_dir: Path, source: str = "<embedded>", overrides: tuple[str, ...] = (),
                 override_base: Path | None = None) -> Recipe:
    """Check ``raw`` (a parsed YAML mapping), apply ``overrides`` and resolve paths.

    Paths from ``raw`` resolve against ``base_dir``; paths from overrides against ``override_base``
    (default: the current directory).
    """
    raw = copy.deepcopy(raw)
    from_override: dict[str, str] = {}
    for text in overrides:
        keys, value = parse_override(text)
        apply_override(raw, keys, value, text)
        from_override[".".join(keys)] = text

    def origin_of(dotted: str) -> str:
        hit = next((t for k, t in from_override.items() if k == dotted or k.startswith(dotted + ".")), None)
        return f" (from --override {hit})" if hit else f" (in {source})"

    checked = _check(raw, origin_of)
    overridden = {k for k in from_override if k.count(".") == 1}
    file_keys = {f"{s}.{k}" for s, sec in checked.items() if s in SECTIONS for k in sec} - overridden
    _resolve_paths(checked, Path(base_dir), file_keys)
    _resolve_paths(checked, Path(override_base or Path.cwd()), overridden)
    sections = {k: v for k, v in checked.items() if k in SECTIONS}
    return Recipe(checked["name"], checked.get("description", ""), source, sections, tuple(overrides))


def load_recipe(spec: str, overrides: tuple[str, ...] | list[str] = ()) -> Recipe:
    """Read a recipe by path or name (see :func:`find_recipe`) and apply ``overrides``."""
    path = find_recipe(spec)
    return parse_recipe(_read_yaml(path), base_dir=path.resolve().parent, source=str(path), overrides=tuple(overrides))
