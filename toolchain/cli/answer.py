"""``kdtool answer``: answer questions with a model directory or a bundle.

``--input FILE.jsonl`` is checked whole first (a malformed line is one error naming it, before any
model runs), then answered in chunks: each chunk's lines are written and flushed as soon as they are
produced, so memory stays flat over any number of questions and an interrupted run keeps every
line it finished (Ctrl-C exits 130 and says how many).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Iterator

import click

from kdtool.cli.options import TEXT, require_signature_option

CHUNK = 64  # questions per predict call: bounds memory, and how often output is flushed


def _parse_line(path: Path, n: int, line: str):
    from kdtool.data import Example
    from kdtool.errors import InputError

    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise InputError(f"{path}:{n} is not valid JSON ({err.msg}); give one JSON object per line") from None
    if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not isinstance(row.get("context"), str):
        raise InputError(f"{path}:{n} needs string fields \"question\" and \"context\"")
    for field in ("question", "context"):
        if not row[field].strip():
            raise InputError(f"{path}:{n} has an empty {field}; every line needs a question and a passage")
    # the internal id is the line number, so repeated user ids cannot overwrite each other's answers
    return Example(id=str(n), question=row["question"], context=row["context"], answers=()), str(row.get("id", n))


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    from kdtool.errors import InputError

    try:
        with open(path, encoding="utf-8-sig") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    yield n, line
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; give UTF-8 JSON lines") from None


def check_jsonl(path: Path) -> int:
    """Validate every line of ``path`` without keeping them; the number of questions."""
    from kdtool.errors import InputError, require_file

    require_file(path, "input file")
    count = sum(1 for n, line in _lines(path) if _parse_line(path, n, line))
    if not count:
        raise InputError(f"{path} holds no questions; give one {{\"question\", \"context\"}} JSON object per line")
    return count


def chunks(path: Path, size: int = CHUNK) -> Iterator[list]:
    """``[(example, user id), ...]`` lists of at most ``size`` questions, in file order."""
    chunk = []
    for n, line in _lines(path):
        chunk.append(_parse_line(path, n, line))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _Sink:
    """JSON lines to a file (flushed and synced per chunk) or to stdout."""

    def __init__(self, output: Path | None):
        self.output, self.written = output, 0
        self.fh = open(output, "w", encoding="utf-8") if output else None

    def write(self, lines: list[str]) -> None:
        text = "".join(line + "\n" for line in lines)
        if self.fh:
            self.fh.write(text)
            self.fh.flush()
            os.fsync(self.fh.fileno())
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
        self.written += len(lines)

    def close(self) -> None:
        if self.fh:
            self.fh.close()


@click.command("answer")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--question", "-q", type=TEXT, default=None, help="The question (with --context).")
@click.option("--context", "-c", type=TEXT, default=None, help="The passage to answer from (with --question).")
@click.option("--input", "input_file", type=click.Path(path_type=Path), default=None,
              help="JSONL file of {\"id\", \"question\", \"context\"} objects.")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="Write JSONL answers here, each line as soon as it is answered [default: stdout].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or tensorrt (bundles).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads [default: all, or the bundle profile's].")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Windows per forward pass.")
@click.option("--max-answer-length", type=click.IntRange(min=1), default=30, show_default=True,
              help="Longest answer in tokens.")
@click.option("--trust-remote-code", is_flag=True,
              help="Let a model directory run its own Python code (auto_map). Only for code you have read.")
@require_signature_option
def command(model, question, context, input_file, output, device, threads, batch_size, max_answer_length,
            trust_remote_code, require_signature):
    """Answer with MODEL (a Hugging Face QA directory or a kdtool bundle); JSON lines with score and offsets."""
    from kdtool.atomic import check_output_file
    from kdtool.data import Example, PostprocessConfig
    from kdtool.engine import load_engine
    from kdtool.paths import guard_outputs
    from kdtool.predict import PredictConfig, predict

    if input_file is None and (question is None or context is None):
        raise click.UsageError("give --question and --context, or --input FILE.jsonl")
    if input_file is not None and (question is not None or context is not None):
        raise click.UsageError("give either --question/--context or --input, not both")
    if input_file is None:
        for name, value in (("--question", question), ("--context", context)):
            if not value.strip():
                raise click.BadParameter("is empty; give the text to answer from and about", param_hint=name)
    guard_outputs({"MODEL": model, "--input": input_file}, {"--output": output})  # before reading: -o F --input F
    total = check_jsonl(input_file) if input_file else 1
    check_output_file(output, "--output", parent_must_exist=True)
    engine = load_engine(model, device=device, threads=threads, trust_remote_code=trust_remote_code,
                         require_signature=require_signature)
    config = PredictConfig(postprocess=PostprocessConfig(max_answer_length=max_answer_length), batch_size=batch_size)
    parts = chunks(input_file) if input_file else iter([[(Example("0", question, context, answers=()), "0")]])
    sink = _Sink(output)
    try:
        for chunk in parts:
            preds = predict(engine, [ex for ex, _ in chunk], config)
            sink.write([json.dumps({**preds[ex.id].to_dict(), "id": uid}, ensure_ascii=False) for ex, uid in chunk])
    except KeyboardInterrupt:
        where = f" to {output}" if output else ""
        click.echo(f"Interrupted: {sink.written} of {total} answers written{where}.", err=True)
        raise SystemExit(130) from None
    finally:
        sink.close()
        engine.close()
    if output:
        click.echo(f"{sink.written} answers written to {output}", err=True)
