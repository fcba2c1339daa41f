"""``kdtool answer``: answer questions with a model directory or a bundle."""

from __future__ import annotations

import json
from pathlib import Path

import click


def _read_jsonl(path: Path):
    from kdtool.data import Example
    from kdtool.errors import InputError, require_file

    require_file(path, "input file")
    examples = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"{path}:{n} is not valid JSON ({err.msg}); give one JSON object per line") from None
            if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not isinstance(row.get("context"), str):
                raise InputError(f"{path}:{n} needs string fields \"question\" and \"context\"")
            examples.append(Example(id=str(row.get("id", n)), question=row["question"], context=row["context"], answers=()))
    if not examples:
        raise InputError(f"{path} holds no questions")
    return examples


@click.command("answer")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--question", "-q", default=None, help="The question (with --context).")
@click.option("--context", "-c", default=None, help="The passage to answer from (with --question).")
@click.option("--input", "input_file", type=click.Path(path_type=Path), default=None,
              help="JSONL file of {\"id\", \"question\", \"context\"} objects.")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="Write JSONL answers here [default: stdout].")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or tensorrt (bundles).")
@click.option("--threads", type=int, default=None, help="CPU threads [default: all, or the bundle profile's].")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Windows per forward pass.")
@click.option("--max-answer-length", type=int, default=30, show_default=True, help="Longest answer in tokens.")
def command(model, question, context, input_file, output, device, threads, batch_size, max_answer_length):
    """Answer with MODEL (a Hugging Face QA directory or a kdtool bundle); JSON lines with score and offsets."""
    from kdtool.atomic import atomic_write_text
    from kdtool.data import Example, PostprocessConfig
    from kdtool.engine import load_engine
    from kdtool.predict import PredictConfig, predict

    if input_file is None and (question is None or context is None):
        raise click.UsageError("give --question and --context, or --input FILE.jsonl")
    if input_file is not None and (question is not None or context is not None):
        raise click.UsageError("give either --question/--context or --input, not both")
    examples = _read_jsonl(input_file) if input_file else [Example("0", question, context, answers=())]
    engine = load_engine(model, device=device, threads=threads)
    config = PredictConfig(postprocess=PostprocessConfig(max_answer_length=max_answer_length), batch_size=batch_size)
    preds = predict(engine, examples, config)
    lines = [json.dumps(preds[ex.id].to_dict(), ensure_ascii=False) for ex in examples]
    if output:
        atomic_write_text(output, "\n".join(lines) + "\n")
        click.echo(f"{len(lines)} answers written to {output}", err=True)
    else:
        click.echo("\n".join(lines))
