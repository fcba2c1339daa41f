"""The "redo this stage by hand" command lines, generated from the stage's config so they cannot drift from it.

A :class:`CliSpec` is the one place that says how the fields of a library config are spelled on its
``kdtool`` command: which are positional arguments, which options are not named ``--field-name``,
which booleans are turned off by a flag of their own (``fuse`` by ``--no-fuse``), which lists are
given one option per item, and which fields no option of the command sets (``recipe_only``). A
field of a nested config (``ValidateConfig.features``) is named with a dot: ``features.max_length``.

:func:`command_line` writes every field whose value differs from the config's default (or that is in
``always``). :func:`unplaced_fields` lists the fields a spec does not place; the round-trip tests
(build the line from a config, parse it with the real click command, compare the configs) call it,
so a new config field without a command-line spelling fails a test instead of silently dropping
out of the printed commands. A recipe-only field set to a non-default value is written after the
command as a ``#`` comment, so the printed line says what it does not reproduce.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class CliSpec:
    command: str  # "export", "validate", ...
    arguments: tuple[str, ...] = ()  # fields given as positional arguments, in order (a list field: one per item)
    options: Mapping[str, str] = field(default_factory=dict)  # field -> option, where it is not --field-name
    # bool field -> the flag that makes it False, where not --no-field-name
    negations: Mapping[str, str] = field(default_factory=dict)
    repeated: frozenset = frozenset()  # list fields given as one option per item
    # dict field (holding another command's options) -> its keys' options, where not --key-name
    dicts: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    recipe_only: frozenset = frozenset()  # fields that no option of the command sets
    always: frozenset = frozenset()  # fields written even at their default (the command's default differs)

    def option(self, name: str) -> str:
        return self.options.get(name, "--" + name.rpartition(".")[2].replace("_", "-"))

    def negation(self, name: str) -> str:
        return self.negations.get(name, "--no-" + name.rpartition(".")[2].replace("_", "-"))


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def flat_fields(config) -> Iterator[tuple[str, Any, Any]]:
    """``(name, value, default)`` of every field of ``config``; a nested config's fields as ``outer.inner``."""
    for f in dataclasses.fields(config):
        value, default = getattr(config, f.name), _default(f)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for name, v, d in flat_fields(value):
                yield f"{f.name}.{name}", v, d
        else:
            yield f.name, value, default


def unplaced_fields(spec: CliSpec, config_class) -> list[str]:
    """Fields of ``config_class`` that ``spec`` neither places nor lists as recipe-only.

    A field is placed when it is an argument, has an entry in ``options``/``negations``/``dicts`` or is
    in ``repeated``/``always``; fields spelled ``--field-name`` must also be listed in ``options`` (with that
    spelling) so that this check can tell a deliberate name from a forgotten field.
    """
    placed = set(spec.arguments) | set(spec.options) | set(spec.negations) | set(spec.dicts) | set(spec.repeated) \
        | set(spec.recipe_only) | set(spec.always)
    names = []
    for f in dataclasses.fields(config_class):
        default = _default(f)
        if dataclasses.is_dataclass(default) and not isinstance(default, type):
            names += [f"{f.name}.{n}" for n, _, _ in flat_fields(default)]
        else:
            names.append(f.name)
    return [n for n in names if n not in placed]


def _text(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


def _option_pairs(spec: CliSpec, name: str, value) -> list[tuple[str, Any]]:
    if isinstance(value, bool):
        return [(spec.option(name), True)] if value else [(spec.negation(name), True)]
    if name in spec.dicts:
        inner = CliSpec(spec.command, options=spec.dicts[name])  # keys of another command's config:
        return [(inner.option(key), v) for key, v in (value or {}).items()  # their defaults are not known here,
                if v is not None and v is not False]  # so a False flag is left out, as at its default
    if name in spec.repeated:
        return [(spec.option(name), v) for v in value or ()]
    return [(spec.option(name), value)]


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
    values = {name: (value, default) for name, value, default in flat_fields(config)}
    if baseline is not None:
        values = {name: (values[name][0], value) for name, value, _ in flat_fields(baseline)}
    arguments = []
    for name in spec.arguments:
        value = values[name][0]
        arguments += list(value) if isinstance(value, (list, tuple)) else [value]
    options, unsaid = [], []
    for name, (value, default) in values.items():
        if name in spec.arguments or name in omit or (value == default and name not in spec.always):
            continue
        if isinstance(value, Path):
            value = str(value)
        if name in spec.recipe_only:
            unsaid.append(f"{name}={value!r}")
            continue
        if value is None:
            continue  # None is every option's "not given"
        options += _option_pairs(spec, name, value)
    line = join(spec.command, arguments, [*options, *extra])
    return line + (f"  # recipe only: {', '.join(unsaid)}" if unsaid else "")


# ---------------------------------------------------------------------------------------------
# the specs: one per command a recipe stage prints

EXPORT = CliSpec(
    "export", arguments=("model_dir",),
    options={"output": "-o", "precision": "--precision", "calibration_data": "--calibration-data",
             "calibration_method": "--calibration-method", "calibration_samples": "--calibration-samples",
             "opset": "--opset", "max_seq_length": "--max-seq-length", "profile": "--profile", "trt": "--trt",
             "reduce_range": "--reduce-range", "fast_gelu": "--fast-gelu", "overwrite": "--overwrite",
             "trust_remote_code": "--trust-remote-code"},
    negations={"fuse": "--no-fuse", "per_channel": "--per-tensor"},
    recipe_only=frozenset({"parity_samples", "parity_tolerance", "qat_parity_tolerance"}))

VALIDATE = CliSpec(
    "validate", arguments=("models",),
    options={"data": "--data", "lang": "--lang", "max_f1_drop": "--max-f1-drop", "limit": "--limit",
             "batch_size": "--batch-size", "features.max_length": "--max-length", "features.doc_stride": "--doc-stride",
             "n_best": "--n-best", "max_answer_length": "--max-answer-length",
             "null_score_diff_threshold": "--null-threshold", "device": "--device", "threads": "--threads",
             "trust_remote_code": "--trust-remote-code", "task": "--task", "require_signature": "--require-signature",
             "strict": "--strict"},
    negations={"self_test": "--no-self-test"},
    recipe_only=frozenset({"features.max_query_length"}),
    always=frozenset({"lang", "features.max_length", "features.doc_stride"}))  # the command's defaults differ

PROFILE = CliSpec(
    "profile", arguments=("models",),
    options={"profile": "--profile", "seq_lengths": "--seq-len", "batch_sizes": "--batch-size", "data": "--data",
             "data_limit": "--data-limit", "runs": "--runs", "warmup": "--warmup", "threads": "--threads",
             "device": "--device", "trust_remote_code": "--trust-remote-code", "torch_variants": "--torch-variant",
             "require_signature": "--require-signature"},
    repeated=frozenset({"torch_variants"}),
    recipe_only=frozenset({"seed"}))

SPLIT = CliSpec(
    "split", arguments=("data",),
    options={"train": "--train", "dev": "--dev", "dev_fraction": "--dev-fraction", "seed": "--seed"},
    always=frozenset({"dev_fraction", "seed"}))


def training_spec(command: str, config_class) -> CliSpec:
    """``kdtool finetune``/``distill``: every option is named after its field, but for these."""
    names = {f.name for f in dataclasses.fields(config_class)}
    renamed = {"train_file": "--train", "dev_file": "--dev", "output": "-o"}
    options = {n: renamed.get(n, "--" + n.replace("_", "-")) for n in names if n != "model"}
    # the inputs, output and windows are always written: a redo command says where everything is
    always = {"train_file", "dev_file", "output", "lang", "max_length", "doc_stride", "max_query_length"}
    return CliSpec(command, arguments=("model",), options=options, always=frozenset(always))


PRUNE = CliSpec(
    "prune", arguments=("model",),
    options={"output": "-o", "train_file": "--train", "dev_file": "--dev", "teacher": "--teacher", "task": "--task",
             "target_params": "--target-params", "target_flops": "--target-flops",
             "target_latency_ms": "--target-latency", "profile": "--profile", "seq_len": "--seq-len",
             "structures": "--prune", "schedule": "--schedule", "steps": "--steps",
             "importance_examples": "--importance-examples", "importance_batch_size": "--importance-batch-size",
             "ffn_step": "--ffn-step", "latency_engine": "--latency-engine", "latency_runs": "--latency-runs",
             "recover": "--recover", "resume": "--resume", "overwrite": "--overwrite", "stop_after": "--stop-after"},
    dicts={"recovery": {"schedule": "--recovery-schedule"}})

