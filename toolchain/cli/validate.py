"""``kdtool validate``: F1/EM of models and bundles on a SQuAD file, with a drift budget."""

from __future__ import annotations

import re
from pathlib import Path

import click

from kdtool.atomic import atomic_directory, atomic_write_json, check_output_dir, check_output_file
from kdtool.cli.config_options import build_config, config_options
from kdtool.validate import ValidateConfig


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
@config_options(ValidateConfig)
@click.option("--json", "json_out", type=click.Path(), default=None, help="Write the full result as JSON here.")
@click.option("--predictions-dir", type=click.Path(), default=None,
              help="Write each model's predictions (official format) into this new directory.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --predictions-dir written by kdtool.")
def command(reference, candidates, json_out, predictions_dir, overwrite, **options):
    """Score REFERENCE and each CANDIDATE (model dirs or bundles) on --data and compare them.

    Prints F1, EM, the drop against the reference and the share of questions with the same
    answer. With --max-f1-drop the exit code is 1 when any candidate drops more.
    """
    from kdtool.paths import guard_outputs
    from kdtool.progress import console
    from kdtool.tasks import resolve_task
    from kdtool.validate import format_table, predictions_json, signature_warning, validate

    guard_outputs({"REFERENCE": reference, "CANDIDATES": list(candidates), "--data": options["data"]},
                  {"--json": json_out, "--predictions-dir": predictions_dir})
    check_output_file(json_out, "--json")  # outputs are checked before minutes of scoring, not after
    if predictions_dir:
        check_output_dir(Path(predictions_dir), overwrite, kind="predictions")
    # windows and stride are the task's business: a pair is one window, so --doc-stride does not apply to it
    features = resolve_task(options["task"], reference).module().feature_config(options["max_length"],
                                                                                  options["doc_stride"])
    config = build_config(ValidateConfig, options, models=(reference, *candidates), features=features)
    with console() as progress:
        result = validate(config, progress=progress)
    warning = signature_warning(config)  # after the checks: an error stays the only line
    if warning:
        click.echo(f"Warning: {warning}", err=True)
    click.echo(f"{result.data_report['source']}: {result.data_report['questions_scored']} questions, lang={config.lang}")
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
        click.echo(f"FAIL: {worst.name} drops {worst.f1_drop:.2f} F1 against the reference (budget {config.max_f1_drop}).",
                   err=True)
        raise SystemExit(1)
