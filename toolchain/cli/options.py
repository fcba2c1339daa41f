"""Option types and options shared by several commands: one definition each, reused everywhere.

``FINITE`` replaces ``type=float``: ``nan``, ``inf`` and ``-inf`` parse as floats in Python, so a
``--lr nan`` would train a broken model and a ``--max-f1-drop nan`` would fail every comparison and
write NaN into JSON. ``require_signature_option`` is the ``--require-signature PUB`` of every
command that opens a bundle (answer, validate, profile, build-engine, serve): one line to add.
"""

from __future__ import annotations

import math

import click


class FiniteFloat(click.ParamType):
    """A float that is a number: NaN and infinities are bad input (exit 2), with optional bounds."""

    name = "float"

    def __init__(self, min: float | None = None, max: float | None = None):
        self.min, self.max = min, max

    def convert(self, value, param, ctx):
        if isinstance(value, float) and math.isfinite(value):
            number = value
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                self.fail(f"{str(value)[:40]!r} is not a number", param, ctx)
            if not math.isfinite(number):
                self.fail(f"{str(value)[:40]!r} is not a finite number; give a real value", param, ctx)
        if self.min is not None and number < self.min:
            self.fail(f"{number} is below the minimum {self.min}", param, ctx)
        if self.max is not None and number > self.max:
            self.fail(f"{number} is above the maximum {self.max}", param, ctx)
        return number


FINITE = FiniteFloat()


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


require_signature_option = click.option(
    "--require-signature", "require_signature", type=click.Path(dir_okay=False), default=None, metavar="PUB",
    help="Refuse any bundle (among the models) whose manifest is not signed by the Ed25519 public key in PUB "
         "(kdtool keygen, export --sign-key).")


# ---------------------------------------------------------------------------------------------
# options of the commands that open models and answer with them (answer, validate, serve, profile)


def trust_remote_code_option(who: str = "a model directory", own: str = "its"):
    """``--trust-remote-code``: ``who`` names what may run code (``model directories``, ``MODEL_DIR``)."""
    return click.option("--trust-remote-code", is_flag=True,
                        help=f"Let {who} run {own} own Python code (auto_map). Only for code you have read.")


def threads_option(help: str = "CPU threads for the engine [default: all, or the bundle profile's]."):
    return click.option("--threads", type=click.IntRange(min=1), default=None, help=help)


def device_option(help: str = "auto, cpu, cuda or tensorrt (bundles)."):
    """The engine device of answer, validate and serve (profile's --device is a profile setting of its own)."""
    return click.option("--device", default="auto", show_default=True, help=help)


batch_size_option = click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True,
                                 help="Windows per forward pass.")
max_answer_length_option = click.option("--max-answer-length", type=click.IntRange(min=1), default=30, show_default=True,
                                        help="Longest answer in tokens.")
n_best_option = click.option("--n-best", type=click.IntRange(min=1), default=20, show_default=True,
                             help="Start and end candidates considered per window.")
# --max-length and --doc-stride stay with their commands: validate takes any integer and lets the
# library say "max_length must be at least 32", serve refuses it as a usage error; both are tested.
