"""``kdtool derive-pairs``: a QNLI-style Spanish (or any language) matching set from a SQuAD file."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command(context_settings={"show_default": True})
@click.argument("squad", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Pairs file to write (JSONL).")
@click.option("--negatives", type=click.IntRange(0, 1000), default=1,
              help="Non-answer sentences per question, those sharing the most words with it (hard negatives).")
@click.option("--all-sentences", is_flag=True, help="Pair every question with every sentence of its context.")
def command(squad, output, negatives, all_sentences):
    """Pair each question of SQUAD with sentences of its context; label 1 when the sentence holds an answer.

    Sentence boundaries never fall inside a gold answer. Split SQUAD by article first (kdtool split)
    and derive train and dev separately.
    """
    from kdtool.atomic import check_output_file
    from kdtool.data import load_squad
    from kdtool.paths import guard_outputs
    from kdtool.tasks.derive import derive_pairs
    from kdtool.tasks.pairs import write_pairs_jsonl

    guard_outputs({"SQUAD": squad}, {"--output": output})
    check_output_file(output, "--output")
    ds = load_squad(squad)
    rows, report = derive_pairs(ds.examples, negatives=None if all_sentences else negatives)
    write_pairs_jsonl(Path(output), rows)
    click.echo(ds.report.summary())
    click.echo(f"{output}: {json.dumps(report)}")
