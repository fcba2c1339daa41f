"""``kdtool finetune``: train a model on hard labels (no teacher) — a teacher from a pretrained
encoder, or the no-distillation baseline of a student under the same budget as ``kdtool distill``.
``--task`` picks extractive QA (SQuAD JSON) or pair classification (pairs TSV/JSONL)."""

from __future__ import annotations

import click

from kdtool.cli.config_options import build_config, config_options
from kdtool.distill.config import TrainConfig
from kdtool.progress import console


def finish(report: dict) -> None:
    """The one line a finished (or stopped) run prints (once, by the main process)."""
    if "worker" in report:
        return
    if report.get("stopped"):
        click.echo(f"stopped after step {report['step']}; continue with --resume (run directory {report['work_dir']})")
        return
    best = report["best"]
    metrics = " ".join(f"{k} {v:.2f}" for k, v in (best or {}).items() if k not in ("epoch", "step", "stage"))
    score = f"; best dev {metrics} (epoch {best['epoch']})" if best else ""
    click.echo(f"wrote {report['config']['output']} ({report['student']['parameters'] / 1e6:.1f}M parameters, "
               f"{report['total_seconds']:.0f} s){score}")


PROGRESS = click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")


@click.command(context_settings={"show_default": True})
@click.argument("model", type=click.Path())
@config_options(TrainConfig)
@PROGRESS
def command(progress, **options):
    """Fine-tune MODEL (a model of the task, or a bare encoder, which gets a new head) on hard labels.

    With --qat, MODEL is fine-tuned fake-quantized to INT8 against its own FP32 copy as the teacher
    (logit distillation only: it learns to reproduce its FP32 self), the same run as kdtool distill
    MODEL --student MODEL --schedule prediction --attention-loss none --hard-weight 0 --qat."""
    from kdtool.distill import DistillConfig, distill, finetune

    if not options["qat"]:
        config = build_config(TrainConfig, options)
        with console(bars=progress) as bars:
            report = finetune(config, progress=bars)
        finish(report)
        return
    if options.pop("student") is not None:
        raise click.UsageError("finetune --qat quantizes MODEL itself against its FP32 copy; for a new student use "
                               "kdtool distill TEACHER --student ... --qat")
    options.pop("student_init")
    config = build_config(DistillConfig, options, student=options["model"], student_init="random",
                          schedule="prediction", attention_loss="none", prediction_weight=1.0, hard_weight=0.0)
    with console(bars=progress) as bars:
        report = distill(config, progress=bars)
    finish(report)
