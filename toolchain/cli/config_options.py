"""Click options generated from a config's fields (:mod:`kdtool.fields`), and the config built back from them.

``@config_options(ExportConfig)`` adds one option per field that a command sets, in field order: its
names, type, default and help all come from the field, so a default is written once, in the config.
The command's function takes the values under the fields' names (a nested field under its own name:
``features.max_length`` is ``max_length``) and :func:`build_config` makes the config from them.
Arguments, and options that are not config fields (``--json``, ``--sign-key``), the command declares
itself; ``custom`` lets a command give a field an option of its own make (prune's ``--prune``), whose
default ``tests/test_config_options.py`` still checks against the field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path

import click

from kdtool.cli.options import (
    COUNT,
    FINITE,
    FRACTION,
    RATE,
    SEED,
    STRIDE,
    TEMPERATURE,
    TEXT,
    TOKENS,
    WEIGHT,
    FiniteFloat,
    IntList,
    cpu_count,
    require_signature_option,
)
from kdtool.fields import Setting, Spelling, settings, spelling_of

# the type names a Spelling may give (``type="tokens"``); paths keep the field's own type (str or Path)
TYPES: dict[str, Callable[[type], click.ParamType]] = {
    "tokens": lambda base: TOKENS, "count": lambda base: COUNT, "stride": lambda base: STRIDE,
    "seed": lambda base: SEED, "rate": lambda base: RATE, "fraction": lambda base: FRACTION,
    "weight": lambda base: WEIGHT, "temperature": lambda base: TEMPERATURE, "text": lambda base: TEXT,
    "share": lambda base: FiniteFloat(0, 1, min_open=True, max_open=True),  # a fraction that is neither 0 nor 1
    "milliseconds": lambda base: FiniteFloat(0, 1e7, min_open=True),  # a latency
    "ints": lambda base: IntList(),
    "threads": lambda base: click.IntRange(1, cpu_count()),  # more threads than CPUs only slow an engine down
    "file": lambda base: click.Path(dir_okay=False, path_type=base),
    "dir": lambda base: click.Path(file_okay=False, path_type=base),
    "path": lambda base: click.Path(path_type=base),
}


def value_type(annotation) -> type:
    """The type a field holds, ``None`` and containers taken off: ``int | None`` -> int, ``list[str]`` -> list."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return value_type(next(a for a in typing.get_args(annotation) if a is not type(None)))
    return typing.get_origin(annotation) or annotation


def click_type(s: Setting) -> click.ParamType | None:
    sp, base = s.spelling, value_type(s.annotation)
    if sp.choices is not None:
        return click.Choice(list(sp.choices))
    if isinstance(sp.type, tuple):
        low, high = sp.type
        high = None if callable(high) else high  # a bound that depends on the machine is the config's to check
        return click.IntRange(low, high) if base is int else FiniteFloat(low, high)
    if sp.type is not None:
        return TYPES[sp.type](base if base in (str, Path) else str)
    return {int: click.INT, float: FINITE, Path: click.Path(path_type=Path)}.get(base)


def _help(s: Setting) -> str:
    text = s.spelling.help
    if s.spelling.default_help:
        text += f" [default: {s.spelling.default_help}]"
    return text


def make_option(s: Setting) -> Callable:
    """The click option of one setting."""
    sp, names, key = s.spelling, s.spelling.names(s.name), s.key
    common = dict(help=_help(s), hidden=sp.hidden)
    if value_type(s.annotation) is bool:
        if sp.off and sp.option:  # --per-channel/--per-tensor
            return click.option(f"{names[0]}/{sp.off}", key, default=s.default, show_default=True, **common)
        if sp.off:  # --no-fuse turns a True default off
            return click.option(sp.off, key, flag_value=False, default=True, show_default=False, **common)
        return click.option(*names, key, is_flag=True, default=False, **common)
    if sp.type == "signature":  # --require-signature with its --min-version
        return lambda fn: require_signature_option(fn, help=sp.help)
    if sp.required or s.default is dataclasses.MISSING:  # no default at all: click 8.5 takes default=None as a value
        common["required"] = True
    else:
        common["default"] = s.default
    shown = s.default not in (None, dataclasses.MISSING) and not sp.default_help
    return click.option(*names, key, type=click_type(s), multiple=sp.multiple, metavar=sp.metavar, show_default=shown,
                        **common)


def command_settings(cls) -> list[Setting]:
    """The settings of ``cls`` that are options of its command: not arguments, not recipe-only, not a dict of
    another command's options (the command adds those: prune's recovery)."""
    return [s for s in settings(cls) if not s.recipe_only and not s.spelling.argument and s.spelling.keys is None]


def config_options(cls, *, custom: Mapping[str, Callable] | None = None) -> Callable:
    """Decorator: one click option per setting of ``cls``, in field order (``custom``: field -> the option
    decorator the command makes for it, e.g. prune's ``--prune``, whose default and help load the pruning units)."""
    chosen = command_settings(cls)
    keys = [s.key for s in chosen]
    if len(set(keys)) != len(keys):
        raise TypeError(f"{cls.__name__}: two settings share an option name: {sorted(k for k in keys if keys.count(k) > 1)}")

    def add(fn):
        for s in reversed(chosen):
            option = (custom or {}).get(s.name) or make_option(s)
            fn = option(fn)
        return fn

    return add


def build_config(cls, values: Mapping, **given):
    """The ``cls`` the parsed ``values`` (and ``given``, by field name) describe; nested configs from their own
    fields' values, a repeated option's items as a list (None when it was not given)."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in given:
            kwargs[f.name] = given[f.name]
        elif isinstance(f.default_factory, type) and dataclasses.is_dataclass(f.default_factory):
            kwargs[f.name] = build_config(f.default_factory, values)
        elif f.name in values:
            multiple = (spelling_of(f) or Spelling()).multiple
            kwargs[f.name] = (list(values[f.name]) or None) if multiple else values[f.name]
    return cls(**kwargs)
