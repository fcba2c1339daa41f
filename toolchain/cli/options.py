"""Option types and options shared by several commands: one definition each, reused everywhere.

``FINITE`` replaces ``type=float``: ``nan``, ``inf`` and ``-inf`` parse as floats in Python, so a
``--lr nan`` would train a broken model and a ``--max-f1-drop nan`` would fail every comparison and
write NaN into JSON. ``require_signature_option`` is the ``--require-signature PUB`` of every
command that opens a bundle (answer, validate, profile, build-engine, serve): one line to add.
``training_options`` adds the options of a training run (``TrainConfig``'s fields) that ``finetune``,
``distill`` and (through distill's) ``prune`` share; ``option`` is click's with ``show_default``.
"""

from __future__ import annotations

import functools
import math

import click


class FiniteFloat(click.ParamType):
    """A float that is a number: NaN and infinities are bad input (exit 2), with optional bounds
    (``min_open``/``max_open``: the bound itself is excluded)."""

    name = "float"

    def __init__(self, min: float | None = None, max: float | None = None, *, min_open: bool = False,
                 max_open: bool = False):
        self.min, self.max, self.min_open, self.max_open = min, max, min_open, max_open

    def convert(self, value, param, ctx):
        if isinstance(value, float) and math.isfinite(value):
            number = value
        else:
            try:
                number = float(value)
            except (TypeError, ValueError, OverflowError):
                self.fail(f"{str(value)[:40]!r} is not a number", param, ctx)
            if not math.isfinite(number):
                self.fail(f"{str(value)[:40]!r} is not a finite number; give a real value", param, ctx)
        if self.min is not None and (number < self.min or self.min_open and number == self.min):
            self.fail(f"{number:g} is {'not above' if self.min_open else 'below'} the minimum {self.min:g}", param, ctx)
        if self.max is not None and (number > self.max or self.max_open and number == self.max):
            self.fail(f"{number:g} is {'not below' if self.max_open else 'above'} the maximum {self.max:g}", param, ctx)
        return number


FINITE = FiniteFloat()

# Ranges of the numeric options, checked at parse time (``--seed -1``, ``--temperature 1e300`` and
# ``--threads 100000`` are bad input, not an internal error or a process the kernel kills).
MAX_COUNT = 2**31 - 1  # questions, epochs, steps, windows, runs: anything larger is a typo
MAX_TOKENS = 1 << 20  # tokens in a window: far beyond any model's position table
COUNT = click.IntRange(1, MAX_COUNT)
TOKENS = click.IntRange(1, MAX_TOKENS)
STRIDE = click.IntRange(0, MAX_TOKENS)
SEED = click.IntRange(0, 2**32 - 1)  # what numpy and torch seeds take
RATE = FiniteFloat(0, 10, min_open=True)  # a learning rate
FRACTION = FiniteFloat(0, 1, max_open=True)  # warm-up, dropout
WEIGHT = FiniteFloat(0, 1e6)  # a loss weight, weight decay, a gradient norm
TEMPERATURE = FiniteFloat(0, 1000, min_open=True)  # T^2 scales the soft loss: 1e300 would overflow


class IntList(click.ParamType):
    """A comma-separated list of positive integers: ``128,256,384``."""

    name = "N[,N...]"

    def __init__(self, max: int = 1 << 20):
        self.max = max

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return list(value)
        try:
            out = [int(x) for x in str(value).split(",") if x.strip()]
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of integers", param, ctx)
        if not out or min(out) < 1 or max(out) > self.max:
            self.fail(f"{str(value)[:40]!r}: give integers from 1 to {self.max}, e.g. 128,256,384", param, ctx)
        return out


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity mask, else the machine's)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class Text(click.ParamType):
    """Command-line text that is valid Unicode.

    Under ``LC_ALL=C`` Python decodes undecodable argument bytes to lone surrogates, which fail
    much later inside the tokenizer; they are bad input here, said in one line.
    """

    name = "text"

    def convert(self, value, param, ctx):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            self.fail("holds bytes that are not valid text in this locale; pass UTF-8 text under a UTF-8 locale "
                      "(e.g. LC_ALL=C.UTF-8)", param, ctx)
        return value


TEXT = Text()


def _min_version(ctx, param, value):
    if value is None:
        return None
    from kdtool.bundle.signing import parse_version
    from kdtool.errors import InputError

    try:
        return parse_version(value)
    except InputError as err:
        raise click.BadParameter(str(err).removeprefix("--min-version "), ctx, param) from None


SIGNATURE_HELP = ("Refuse any bundle (among the models) not signed by the public key in PUB: an EC key checks the "
                  "OpenSSF Model Signing model.sig (kdtool keygen, export --sign-key), an Ed25519 key the deprecated "
                  "manifest.sig.")


def require_signature_option(fn, help: str = SIGNATURE_HELP):
    """``--require-signature PUB`` and ``--min-version T`` of every command that opens a bundle. The command
    gets ``require_signature`` as a :class:`kdtool.bundle.signing.SignatureRequirement` (the key path, carrying
    the minimum version) or None, so it passes on to the loaders like any key path."""

    @functools.wraps(fn)
    def command(*args, min_version=None, **kwargs):
        key = kwargs.get("require_signature")
        if min_version is not None and not key:
            raise click.UsageError("--min-version needs --require-signature PUB: the version checked is the signed one")
        if key:
            from kdtool.bundle.signing import SignatureRequirement

            kwargs["require_signature"] = SignatureRequirement(key, min_version)
        return fn(*args, **kwargs)

    command = click.option(
        "--min-version", default=None, metavar="TIME", callback=_min_version,
        help="With --require-signature: refuse a bundle exported before TIME (UTC, e.g. 2026-03-01T12:00:00Z; "
             "kdtool verify prints a bundle's version), so an older signed bundle cannot be rolled back in.")(command)
    return click.option(
        "--require-signature", "require_signature", type=click.Path(dir_okay=False), default=None, metavar="PUB",
        help=help)(command)


def device_check_options(f):
    """``--no-self-test`` and ``--strict``: the device checks a bundle gets when it opens (kdtool.engines.device)."""
    f = click.option("--strict", is_flag=True,
                     help="Refuse instead of warning: a bundle exported for another INT8 arithmetic class than this "
                          "device's, one that carries no self-test, and (with --require-signature) model directories, "
                          "which carry no signature.")(f)
    return click.option("--no-self-test", "no_self_test", is_flag=True,
                        help="Skip the bundle's self-test (its golden windows through this engine, against the "
                             "logits they gave where it was certified), which runs when a bundle opens.")(f)


# ---------------------------------------------------------------------------------------------
# training runs: finetune, distill, prune (its recovery)


def option(*names, **kw):
    """``click.option`` showing its default in ``--help``."""
    kw.setdefault("show_default", True)
    return click.option(*names, **kw)


def training_option_list() -> list:
    """The options shared by finetune and distill (and prune's recovery), one per TrainConfig field;
    ``--progress`` picks the CLI's progress renderer."""
    # deferred: kdtool.distill loads torch, and every command imports this module (kdtool --help stays fast)
    from kdtool.distill.config import PRECISIONS, TASK_NAMES

    return [
        option("--task", type=click.Choice(TASK_NAMES), default="qa",
               help="qa: extractive QA on SQuAD JSON; pair-classification: sentence pairs (TSV/JSONL, "
                    "kdtool derive-pairs)."),
        option("--train", "train_file", required=True, type=click.Path(dir_okay=False),
               help="Training file: SQuAD JSON (qa) or pairs TSV/JSONL (pair-classification)."),
        option("--dev", "dev_file", type=click.Path(dir_okay=False), default=None,
               help="Dev file of the same kind: F1/EM (qa) or accuracy/F1 (pairs) after each epoch, the best epoch "
                    "is kept."),
        option("-o", "--output", required=True, type=click.Path(file_okay=False),
               help="Output Hugging Face model directory (model, tokenizer, report, log)."),
        option("--lang", default="es", help="Answer normalisation of the F1/EM metric (es: MLQA rules, en: SQuAD)."),
        option("--max-length", type=TOKENS, default=384, help="Tokens per window (qa) or per pair (pair-classification)."),
        option("--doc-stride", type=STRIDE, default=128, help="Overlap between windows of a long context."),
        option("--max-query-length", type=TOKENS, default=64, help="Longest question in tokens."),
        option("--max-train-examples", type=COUNT, default=None, help="Use only the first N training questions."),
        option("--max-dev-examples", type=COUNT, default=None, help="Use only the first N dev questions."),
        option("--epochs", type=COUNT, default=3, help="Epochs in all (both stages of a two-stage schedule)."),
        option("--batch-size", type=COUNT, default=32, help="Global batch per optimizer step (all processes, all micro-steps)."),
        option("--grad-accum", type=COUNT, default=1, help="Micro-steps per optimizer step."),
        option("--lr", type=RATE, default=3e-5, help="Peak learning rate (AdamW)."),
        option("--weight-decay", type=WEIGHT, default=0.01, help="AdamW weight decay (not on biases and LayerNorm)."),
        option("--warmup", type=FRACTION, default=0.1, help="Linear warm-up as a fraction of each stage's steps."),
        option("--max-grad-norm", type=WEIGHT, default=1.0, help="Gradient clipping norm."),
        option("--dropout", type=FRACTION, default=None, help="Override the student's hidden and attention dropout."),
        option("--precision", type=click.Choice(PRECISIONS), default="auto",
               help="auto: bf16 (or fp16) mixed precision on a GPU, fp32 on CPU. bf16 also runs on a CPU with AVX512-BF16 "
                    "or AMX (about 1.5x faster there)."),
        option("--seed", type=SEED, default=42, help="Seed of initialisation, data order and dropout."),
        option("--save-every", type=COUNT, default=500, help="Optimizer steps between checkpoints."),
        option("--eval-batch-size", type=COUNT, default=64, help="Batch size of evaluation and of the teacher-logits pass."),
        option("--work-dir", type=click.Path(file_okay=False), default=None,
               help="Run directory for checkpoints and logs [default: OUTPUT.work]."),
        option("--resume", is_flag=True, help="Continue the run in the run directory from its newest checkpoint."),
        option("--overwrite", is_flag=True, help="Replace an existing output directory and start the run over."),
        option("--stop-after", type=COUNT, default=None, hidden=True, help="Stop after N optimizer steps (as if killed)."),
        option("--progress/--no-progress", default=True, help="Show a progress bar."),
        option("--qat", is_flag=True, help="Quantization-aware training: train the student fake-quantized to INT8 (weights "
               "per channel, activations at every Linear and at QK^T/PV; NVIDIA Model Optimizer); export it with "
               "kdtool export --precision int8-qat."),
        option("--qat-calibration-windows", type=COUNT, default=128,
               help="Training windows of the calibration pass that initialises the INT8 scales (with --qat)."),
    ]


def training_options(fn):
    """Decorator: the :func:`training_option_list` of a training command, in order."""
    for opt in reversed(training_option_list()):
        fn = opt(fn)
    return fn


# options of the commands that open models and answer with them (answer, validate, serve, profile)


def trust_remote_code_option(who: str = "a model directory", own: str = "its"):
    """``--trust-remote-code``: ``who`` names what may run code (``model directories``, ``MODEL_DIR``)."""
    return click.option("--trust-remote-code", is_flag=True,
                        help=f"Let {who} run {own} own Python code (auto_map). Only for code you have read.")


def threads_option(help: str = "CPU threads for the engine [default: all, or the bundle profile's]."):
    """``--threads``, from 1 to the CPUs this process may run on: more only slows an engine down, and
    ``--threads 100000`` once got the process killed by the kernel."""
    return click.option("--threads", type=click.IntRange(1, cpu_count()), default=None, help=help)


def device_option(help: str = "auto, cpu, cuda or tensorrt (bundles)."):
    """The engine device of answer, validate and serve (profile's --device is a profile setting of its own)."""
    return click.option("--device", default="auto", show_default=True, help=help)


batch_size_option = click.option("--batch-size", type=click.IntRange(1, 1 << 16), default=16, show_default=True,
                                 help="Windows per forward pass.")
max_answer_length_option = click.option("--max-answer-length", type=TOKENS, default=30, show_default=True,
                                        help="Longest answer in tokens.")
n_best_option = click.option("--n-best", type=click.IntRange(1, 1 << 16), default=20, show_default=True,
                             help="Start and end candidates considered per window.")
# --max-length and --doc-stride stay with their commands: validate takes any integer and lets the
# library say "max_length must be at least 32", serve refuses it as a usage error; both are tested.
