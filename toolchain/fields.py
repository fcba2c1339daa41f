"""Config fields that carry their own command-line spelling: the one home of every default, its help and its option.

A library config is a dataclass; each field a command sets is declared with :func:`setting`, so the
field holds the default, and its metadata (a :class:`Spelling`) holds the help text and how the
command line spells it. From that one declaration

- :func:`kdtool.cli.options.config_options` builds the command's click options (names, types, defaults,
  help), and :func:`kdtool.cli.options.build_config` turns the parsed values back into the config;
- :func:`kdtool.recipes.commands.command_line` writes the "redo this stage by hand" command of a recipe;
- ``tests/test_config_options.py`` checks, for every command, that each option's default is its field's.

Adding an option to a command is adding a field to its config with :func:`setting`; nothing else
spells it. A field no option sets (``parity_samples``: a recipe or a library caller sets it) says so
with ``recipe_only=True``, and a printed redo command names it in a trailing comment.

Spelling rules (what :class:`Spelling` leaves out follows from the field):

- the option is ``--field-name`` unless ``option`` names others (``("-o", "--output")``);
- a ``bool`` field is a flag: ``--trt`` when it defaults to False; one that defaults to True is turned
  off by ``off`` alone (``--no-fuse``), or, when ``option`` is given too, by a pair
  (``--per-channel/--per-tensor``);
- the value type comes from the annotation (``int``, ``float`` (finite), ``str``, ``Path``), narrowed
  by ``type``: a range ``(low, high)``, or a name the command line knows (``"tokens"``, ``"count"``,
  ... in :data:`kdtool.cli.config_options.TYPES`), and by ``choices``;
- a nested config (``ValidateConfig.features``) is spelled by its own fields' spellings (``features.max_length``
  is ``--max-length``); ``recipe_only`` on the outer field may then list inner fields this command leaves alone.

This module imports no click: configs live in the library, the command line reads them.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator, Mapping
from dataclasses import MISSING, dataclass, field
from typing import Any

KEY = "kdtool"  # the metadata key of a field's Spelling


@dataclass(frozen=True)
class Spelling:
    help: str = ""
    option: tuple[str, ...] = ()  # option names; () is --field-name
    off: str | None = None  # bool: the option that sets it False (alone: --no-fuse; with ``option``: a pair)
    argument: bool = False  # a positional argument of the command (declared by the command: no default)
    type: Any = None  # (low, high), or a type name of kdtool.cli.config_options.TYPES; None: from the annotation
    choices: tuple | None = None
    default_help: str | None = None  # what --help says the default is, where the value itself does not say it
    metavar: str | None = None
    multiple: bool = False  # a list given as one option per item
    required: bool = False  # the command line needs it (the library config may still take a default)
    hidden: bool = False
    recipe_only: bool | tuple[str, ...] = False  # True: no option sets it; a nested config: its inner fields none sets
    always: bool = False  # a redo command writes it even at its default (a command line says where its files are)
    keys: Mapping[str, str] | None = None  # a dict of another command's options: its keys' options, where not --key

    def names(self, name: str) -> tuple[str, ...]:
        """The option names of field ``name`` (``features.max_length`` -> ``--max-length``)."""
        return self.option or ("--" + name.rpartition(".")[2].replace("_", "-"),)


def setting(default: Any = MISSING, *, factory: Any = MISSING, **spelling) -> Any:
    """A dataclass field with a default (or ``factory``) and its :class:`Spelling` (keyword arguments)."""
    if isinstance(spelling.get("option"), str):
        spelling["option"] = (spelling["option"],)
    return field(default=default, default_factory=factory, metadata={KEY: Spelling(**spelling)})


def shared(cls, name: str, default: Any = MISSING, **changes) -> Any:
    """A field declared like ``cls.name`` (its default and spelling, with ``changes``): one spelling for a
    setting two configs hold (``TrainConfig.max_length`` is ``FeatureConfig.max_length``)."""
    source = {f.name: f for f in dataclasses.fields(cls)}[name]
    spelling = dataclasses.replace(source.metadata[KEY], **changes)
    if default is MISSING:
        return field(default=source.default, default_factory=source.default_factory, metadata={KEY: spelling})
    return field(default=default, metadata={KEY: spelling})


def spelling_of(f: dataclasses.Field) -> Spelling | None:
    return f.metadata.get(KEY)


def spelling(cls, name: str) -> Spelling | None:
    """The spelling of field ``name`` of config class ``cls``."""
    return spelling_of({f.name: f for f in dataclasses.fields(cls)}[name])


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def is_config(value) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


@dataclass(frozen=True)
class Setting:
    """One field of a config, nested fields flattened: ``features.max_length``."""

    name: str  # dotted
    field: dataclasses.Field
    spelling: Spelling | None
    annotation: Any
    recipe_only: bool  # no option of the command sets it

    @property
    def key(self) -> str:
        """The command's parameter name: the innermost field name."""
        return self.name.rpartition(".")[2]

    @property
    def default(self) -> Any:
        """The field's default (a factory's is made when asked for: prune's units load torch)."""
        return default_of(self.field)


def settings(cls, prefix: str = "", inherited: tuple[str, ...] = ()) -> Iterator[Setting]:
    """Every field of config class ``cls``, a nested config's fields as ``outer.inner``, in order."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name, sp = prefix + f.name, spelling_of(f)
        if isinstance(f.default_factory, type) and dataclasses.is_dataclass(f.default_factory):
            inner = sp.recipe_only if sp and isinstance(sp.recipe_only, tuple) else ()
            yield from settings(f.default_factory, name + ".", (*inherited, *(f"{name}.{n}" for n in inner)))
            continue
        recipe_only = sp is None or sp.recipe_only is True or name in inherited
        yield Setting(name, f, sp, hints[f.name], recipe_only)


def unspelled(cls) -> list[str]:
    """Fields of ``cls`` (nested ones dotted) declared without a spelling: neither an option nor marked recipe-only."""
    return [s.name for s in settings(cls) if s.spelling is None]


def flat_values(config) -> Iterator[tuple[str, Any]]:
    """``(dotted name, value)`` of every field of a config instance."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if is_config(value):
            for name, v in flat_values(value):
                yield f"{f.name}.{name}", v
        else:
            yield f.name, value
