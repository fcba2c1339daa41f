"""The "redo this stage by hand" command lines, generated from the stage's config so they cannot drift from it.

A config field says how its command spells it (:mod:`kdtool.fields`: the field's metadata, the same
that builds the command's click options): which fields are positional arguments, which options are
not named ``--field-name``, which booleans are turned off by a flag of their own (``fuse`` by
``--no-fuse``), which lists are given one option per item, and which fields no option sets
(``recipe_only``). A :class:`CliSpec` only names the command and its config class; a field of a
nested config (``ValidateConfig.features``) is named with a dot: ``features.max_length``.

:func:`command_line` writes every field whose value differs from the config's default (or that is
spelled ``always``). :func:`unplaced_fields` lists the fields declared without a spelling; the
round-trip tests (build the line from a config, parse it with the real click command, compare the
configs) call it, so a new config field without a command-line spelling fails a test instead of
silently dropping out of the printed commands. A recipe-only field set to a non-default value is
written after the command as a ``#`` comment, so the printed line says what it does not reproduce.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdtool.data.split import SplitConfig
from kdtool.export.config import ExportConfig
from kdtool.fields import Setting, flat_values, settings, unspelled
from kdtool.profiles.config import ProfileConfig
from kdtool.prune.config import PruneConfig
from kdtool.validate import ValidateConfig


@dataclass(frozen=True)
class CliSpec:
    """A command and the config class whose fields spell its options."""

    command: str  # "export", "validate", ...
    config: type

    @property
    def arguments(self) -> tuple[str, ...]:
        """Fields given as positional arguments, in order (a list field: one per item)."""
        return tuple(s.name for s in settings(self.config) if s.spelling and s.spelling.argument)

    @property
    def recipe_only(self) -> frozenset:
        """Fields that no option of the command sets."""
        return frozenset(s.name for s in settings(self.config) if s.recipe_only)


def flat_fields(config) -> Iterator[tuple[str, Any, Any]]:
    """``(name, value, default)`` of every field of ``config``; a nested config's fields as ``outer.inner``."""
    defaults = {s.name: s.default for s in settings(type(config))}
    for name, value in flat_values(config):
        yield name, value, defaults[name]


def unplaced_fields(spec: CliSpec, config_class=None) -> list[str]:
    """Fields of ``config_class`` (default: the spec's) declared without a spelling (:func:`kdtool.fields.setting`):
    neither an option of the command nor marked recipe-only."""
    return unspelled(config_class or spec.config)


def _text(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def _option_pairs(s: Setting, value) -> list[tuple[str, Any]]:
    sp = s.spelling
    if isinstance(value, bool):
        on = not sp.off or sp.option  # a flag that only turns a setting off has no option for True
        return [(sp.names(s.name)[0], True)] if value and on else [(sp.off, True)] if not value and sp.off else []
    if sp.keys is not None:  # a dict of another command's options: their defaults are not known here,
        return [(sp.keys.get(key, "--" + key.replace("_", "-")), v)  # so a False flag is left out, as at its default
                for key, v in (value or {}).items() if v is not None and v is not False]
    if sp.multiple:
        return [(sp.names(s.name)[0], v) for v in value or ()]
    return [(sp.names(s.name)[0], value)]


def join(command: str, arguments: Iterable, options: Iterable[tuple[str, Any]]) -> str:
    """``kdtool COMMAND ARG... --opt value --flag``, shell-quoted; None and False options are left out."""
    parts = ["kdtool", command, *(shlex.quote(str(a)) for a in arguments)]
    for opt, value in options:
        if value is None or value is False:
            continue
        parts.append(opt)
        if value is not True:
            parts.append(shlex.quote(_text(value)))
    return " ".join(parts)


def command_line(spec: CliSpec, config, *, extra: Iterable[tuple[str, Any]] = (), omit: Iterable[str] = (),
                 baseline=None) -> str:
    """The ``kdtool`` command that builds ``config``; ``extra`` options (outputs that are not config fields)
    go last, ``omit`` names fields left out on purpose (a redo command does not resume or stop early).

    A field is written when it differs from its default, or from ``baseline`` (a config of the same class
    as the command builds it with no options: a distillation strategy's preset values count as given)."""
    omit = set(omit)
    known = {s.name: s for s in settings(type(config))}
    values = {name: (value, default) for name, value, default in flat_fields(config)}
    if baseline is not None:
        values = {name: (values[name][0], value) for name, value, _ in flat_fields(baseline)}
    arguments = []
    for name in spec.arguments:
        value = values[name][0]
        arguments += list(value) if isinstance(value, (list, tuple)) else [value]
    options, unsaid = [], []
    for name, (value, default) in values.items():
        s = known[name]
        if name in spec.arguments or name in omit or (value == default and not (s.spelling and s.spelling.always)):
            continue
        if isinstance(value, Path):
            value = str(value)
        if s.recipe_only:
            unsaid.append(f"{name}={value!r}")
            continue
        if value is None:
            continue  # None is every option's "not given"
        options += _option_pairs(s, value)
    line = join(spec.command, arguments, [*options, *extra])
    return line + (f"  # recipe only: {', '.join(unsaid)}" if unsaid else "")


# the commands a recipe stage prints
EXPORT = CliSpec("export", ExportConfig)
VALIDATE = CliSpec("validate", ValidateConfig)
PROFILE = CliSpec("profile", ProfileConfig)
SPLIT = CliSpec("split", SplitConfig)
PRUNE = CliSpec("prune", PruneConfig)


def training_spec(command: str, config_class) -> CliSpec:
    """``kdtool finetune``/``distill`` and their config class (TrainConfig, DistillConfig)."""
    return CliSpec(command, config_class)
