"""Finding and reading recipes: ``kdtool run NAME`` or a path, ``--override KEY=VALUE``, then the checked recipe.

Recipe lookup: ``kdtool run NAME`` (no ``/`` and no ``.yaml``) reads ``NAME.yaml`` from the
directories in ``$KDTOOL_RECIPES`` and then from the repository's ``recipes/`` folder next to the
installed ``kdtool`` sources (an editable install, which is what ``make setup`` makes). Anything
else is a path.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from kdtool.errors import InputError, check_text, quote, require_file
from kdtool.recipes.checking import check_raw, resolve_paths
from kdtool.recipes.sections import SECTIONS, Recipe

# toolchain/recipes/loading.py -> the repository root's recipes/ folder
REPO_RECIPES = Path(__file__).resolve().parent.parent.parent / "recipes"


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
    require_file(path, "recipe", max_bytes=MAX_RECIPE_BYTES)
    try:
        obj = _safe_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except ValueError:  # int(): a value of more than 4300 digits
        raise InputError(f"{path}: holds a number of more than 4300 digits, too long to read; "
                         "no recipe setting needs one") from None
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
    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise InputError(f"--override {quote(text)}: expected KEY=VALUE with a dotted key, e.g. distill.epochs=3")
    try:
        value = _safe_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # not YAML: take the text as it is
    except ValueError:  # int(): more than 4300 digits
        raise InputError(f"--override {quote(text, 80)}: a number of more than 4300 digits, too long to read") from None
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



def _check_strings(node, dotted: str, origin_of) -> None:
    """Every key and text value of the recipe is Unicode text (a ``"\\ud800"`` escape in YAML is not)."""
    if isinstance(node, str):
        check_text(node, f"recipe key {dotted or '(top level)'}{origin_of(dotted)}", "value")
    elif isinstance(node, dict):
        for k, v in node.items():
            key = f"{dotted}.{k}" if dotted else str(k)
            if isinstance(k, str):
                check_text(k, f"recipe{origin_of(key)}", "key")
            _check_strings(v, key, origin_of)
    elif isinstance(node, list):
        for v in node:
            _check_strings(v, dotted, origin_of)


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

    _check_strings(raw, "", origin_of)
    checked = check_raw(raw, origin_of)
    overridden = {k for k in from_override if k.count(".") == 1}
    file_keys = {f"{s}.{k}" for s, sec in checked.items() if s in SECTIONS for k in sec} - overridden
    resolve_paths(checked, Path(base_dir), file_keys)
    resolve_paths(checked, Path(override_base or Path.cwd()), overridden)
    sections = {k: v for k, v in checked.items() if k in SECTIONS}
    return Recipe(checked["name"], checked.get("description", ""), source, sections, tuple(overrides))


def load_recipe(spec: str, overrides: tuple[str, ...] | list[str] = ()) -> Recipe:
    """Read a recipe by path or name (see :func:`find_recipe`) and apply ``overrides``."""
    path = find_recipe(spec)
    return parse_recipe(_read_yaml(path), base_dir=path.resolve().parent, source=str(path), overrides=tuple(overrides))
