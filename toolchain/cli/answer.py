"""``kdtool answer``: answer questions with a model directory or a bundle (thin layer over
:func:`kdtool.answer.answer_file`, which checks, chunks and writes; Ctrl-C exits 130 and says how many
answers were kept)."""

from __future__ import annotations

from pathlib import Path

import click

from kdtool.cli.options import (
    TEXT,
    batch_size_option,
    device_check_options,
    device_option,
    max_answer_length_option,
    require_signature_option,
    threads_option,
    trust_remote_code_option,
)


@click.command("answer")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--question", "-q", type=TEXT, default=None, help="The question (with --context).")
@click.option("--context", "-c", type=TEXT, default=None, help="The passage to answer from (with --question).")
@click.option("--input", "input_file", type=click.Path(path_type=Path), default=None,
              help="JSONL file of {\"id\", \"question\", \"context\"} objects.")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="Write JSONL answers here, each line as soon as it is answered [default: stdout].")
@device_option()
@threads_option()
@batch_size_option
@max_answer_length_option
@trust_remote_code_option()
@require_signature_option
@device_check_options
def command(model, question, context, input_file, output, device, threads, batch_size, max_answer_length,
            trust_remote_code, require_signature, no_self_test, strict):
    """Answer with MODEL (a Hugging Face QA directory or a kdtool bundle); JSON lines with score and offsets."""
    from kdtool.answer import AnswerConfig, answer_file
    from kdtool.paths import guard_outputs

    if input_file is None and (question is None or context is None):
        raise click.UsageError("give --question and --context, or --input FILE.jsonl")
    if input_file is not None and (question is not None or context is not None):
        raise click.UsageError("give either --question/--context or --input, not both")
    if input_file is None:
        for name, value in (("--question", question), ("--context", context)):
            if not value.strip():
                raise click.BadParameter("is empty; give the text to answer from and about", param_hint=name)
    guard_outputs({"MODEL": model, "--input": input_file}, {"--output": output})  # before reading: -o F --input F
    result = answer_file(AnswerConfig(model=model, input=input_file, question=question, context=context, output=output,
                                      device=device, threads=threads, batch_size=batch_size,
                                      max_answer_length=max_answer_length, trust_remote_code=trust_remote_code,
                                      require_signature=require_signature, self_test=not no_self_test,
                                      strict=strict))
    if result.interrupted:
        where = f" to {output}" if output else ""
        click.echo(f"Interrupted: {result.written} of {result.total} answers written{where}.", err=True)
        raise SystemExit(130)
    if output:
        click.echo(f"{result.written} answers written to {output}", err=True)
