"""``kdtool validate``: F1/EM of models and bundles on a SQuAD file, with a drift budget."""

from __future__ import annotations

import re
from pathlib import Path

import click

from kdtool.atomic import atomic_directory, atomic_write_json, check_output_dir, check_output_file
from kdtool.cli.options import (
    COUNT,
    STRIDE,
    TOKENS,
    FiniteFloat,
    batch_size_option,
    device_check_options,
    device_option,
    max_answer_length_option,
    n_best_option,
    require_signature_option,
    threads_option,
    trust_remote_code_option,
)
from kdtool.metrics import LANGUAGES


def _safe_name(name: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "model"
    out, k = base, 1
    while out in taken:
        k += 1
        out = f"{base}-{k}"
    taken.add(out)
    return out


@click.command("validate")
@click.argument("reference", type=click.Path())
@click.argument("candidates", nargs=-1, type=click.Path())
@click.option("--data", required=True, type=click.Path(),
              help="SQuAD v1.1/v2.0 JSON file (qa) or pairs TSV/JSONL file (pair-classification) to score on.")
@click.option("--task", type=click.Choice(["auto", "qa", "pair-classification"]), default="auto", show_default=True,
              help="auto: the reference model's task. pair-classification reports accuracy and F1.")
@click.option("--lang", default="en", type=click.Choice(sorted(LANGUAGES)), help="Answer normalisation rules (es: MLQA Spanish).")
@click.option("--max-f1-drop", type=FiniteFloat(-100, 100), default=None,
              help="Exit 1 when a candidate's F1 is lower than the reference's by more than this.")
@click.option("--json", "json_out", type=click.Path(), default=None, help="Write the full result as JSON here.")
@click.option("--predictions-dir", type=click.Path(), default=None,
              help="Write each model's predictions (official format) into this new directory.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --predictions-dir written by kdtool.")
@click.option("--limit", type=COUNT, default=None, help="Score only the first N questions.")
@batch_size_option
@click.option("--max-length", type=TOKENS, default=384, show_default=True,
              help="Tokens per window (clipped to the model's limit).")
@click.option("--doc-stride", type=STRIDE, default=128, show_default=True,
              help="Overlap in tokens between windows of a long context.")
@max_answer_length_option
@n_best_option
@click.option("--null-threshold", type=FiniteFloat(-1e6, 1e6), default=0.0, show_default=True,
              help="SQuAD v2.0: answer nothing when null - best span > this.")
@device_option("auto, cpu or cuda[:N].")
@threads_option("CPU threads per model (default: all).")
@trust_remote_code_option("model directories", "their")
@require_signature_option
@device_check_options
def command(reference, candidates, data, task, lang, max_f1_drop, json_out, predictions_dir, overwrite, limit, batch_size,
            max_length, doc_stride, max_answer_length, n_best, null_threshold, device, threads, trust_remote_code,
            require_signature, no_self_test, strict):
    """Score REFERENCE and each CANDIDATE (model dirs or bundles) on --data and compare them.

    Prints F1, EM, the drop against the reference and the share of questions with the same
    answer. With --max-f1-drop the exit code is 1 when any candidate drops more.
    """
    from kdtool.paths import guard_outputs
    from kdtool.progress import console
    from kdtool.validate import ValidateConfig, format_table, predictions_json, signature_warning, validate

    guard_outputs({"REFERENCE": reference, "CANDIDATES": list(candidates), "--data": data},
                  {"--json": json_out, "--predictions-dir": predictions_dir})
    check_output_file(json_out, "--json")  # outputs are checked before minutes of scoring, not after
    if predictions_dir:
        check_output_dir(Path(predictions_dir), overwrite, kind="predictions")
    from kdtool.tasks import resolve_task

    # windows and stride are the task's business: a pair is one window, so --doc-stride does not apply to it
    features = resolve_task(task, reference).module().feature_config(max_length, doc_stride)
    config = ValidateConfig(models=(reference, *candidates), data=data, lang=lang, max_f1_drop=max_f1_drop, limit=limit,
                            batch_size=batch_size, features=features,
                            n_best=n_best, max_answer_length=max_answer_length,
                            null_score_diff_threshold=null_threshold, device=device, threads=threads,
                            trust_remote_code=trust_remote_code, task=task, require_signature=require_signature,
                            self_test=not no_self_test, strict=strict)
    with console() as progress:
        result = validate(config, progress=progress)
    warning = signature_warning(config)  # after the checks: an error stays the only line
    if warning:
        click.echo(f"Warning: {warning}", err=True)
    click.echo(f"{result.data_report['source']}: {result.data_report['questions_scored']} questions, lang={lang}")
    click.echo(format_table(result))
    if json_out:
        atomic_write_json(Path(json_out), result.to_dict())
    if predictions_dir and result.scores:
        taken: set[str] = set()
        with atomic_directory(Path(predictions_dir), overwrite=overwrite, kind="predictions") as tmp:
            for s in result.scores:
                atomic_write_json(tmp / f"{_safe_name(s.name, taken)}.json", predictions_json(result.predictions[s.path]))
    if result.interrupted:
        click.echo("Interrupted: the table shows the models scored so far.", err=True)
        raise SystemExit(130)
    if not result.passed:
        worst = max(result.scores[1:], key=lambda s: s.f1_drop)
        click.echo(f"FAIL: {worst.name} drops {worst.f1_drop:.2f} F1 against the reference (budget {max_f1_drop}).", err=True)
        raise SystemExit(1)
