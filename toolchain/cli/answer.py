"""``kdtool answer``: answer questions with a model directory or a bundle (thin layer over
:func:`kdtool.answer.answer_file`, which checks, chunks and writes; Ctrl-C exits 130 and says how many
answers were kept)."""

from __future__ import annotations

from pathlib import Path

import click

from kdtool.answer import AnswerConfig
from kdtool.cli.config_options import build_config, config_options


@click.command("answer")
@click.argument("model", type=click.Path(path_type=Path))
@config_options(AnswerConfig)
def command(**options):
    """Answer with MODEL (a Hugging Face QA directory or a kdtool bundle); JSON lines with score and offsets."""
    from kdtool.answer import answer_file
    from kdtool.paths import guard_outputs

    question, context, input_file, output = (options[k] for k in ("question", "context", "input", "output"))
    if input_file is None and (question is None or context is None):
        raise click.UsageError("give --question and --context, or --input FILE.jsonl")
    if input_file is not None and (question is not None or context is not None):
        raise click.UsageError("give either --question/--context or --input, not both")
    if input_file is None:
        for name, value in (("--question", question), ("--context", context)):
            if not value.strip():
                raise click.BadParameter("is empty; give the text to answer from and about", param_hint=name)
    guard_outputs({"MODEL": options["model"], "--input": input_file}, {"--output": output})  # before reading: -o F --input F
    result = answer_file(build_config(AnswerConfig, options))
    if result.interrupted:
        where = f" to {output}" if output else ""
        click.echo(f"Interrupted: {result.written} of {result.total} answers written{where}.", err=True)
        raise SystemExit(130)
    if output:
        click.echo(f"{result.written} answers written to {output}", err=True)
