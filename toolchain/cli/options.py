"""Option types and options shared by several commands: one definition each, reused everywhere.

``FINITE`` replaces ``type=float``: ``nan``, ``inf`` and ``-inf`` parse as floats in Python, so a
``--lr nan`` would train a broken model and a ``--max-f1-drop nan`` would fail every comparison and
write NaN into JSON. ``require_signature_option`` is the ``--require-signature PUB`` of every
command that opens a bundle (answer, validate, profile, build-engine, serve): one line to add.
The options of the commands that fill a config are generated from its fields (:mod:`kdtool.cli.config_options`);
the types here are what a field's ``type="tokens"`` names.
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


def threads_option(help: str = "CPU threads for the engine [default: all, or the bundle profile's]."):
    """``--threads``, from 1 to the CPUs this process may run on: more only slows an engine down, and
    ``--threads 100000`` once got the process killed by the kernel."""
    return click.option("--threads", type=click.IntRange(1, cpu_count()), default=None, help=help)
