"""``kdtool finetune``: train a model on hard labels (no teacher) — a teacher from a pretrained
encoder, or the no-distillation baseline of a student under the same budget as ``kdtool distill``.
``--task`` picks extractive QA (SQuAD JSON) or pair classification (pairs TSV/JSONL)."""

from __future__ import annotations

import click

from kdtool.cli.options import FINITE
from kdtool.distill.config import PRECISIONS, STUDENT_INITS, TASK_NAMES


def _opt(*names, **kw):
    kw.setdefault("show_default", True)
    return click.option(*names, **kw)


# options shared by finetune and distill: (decorator, config field)
TRAINING_OPTIONS = [
    _opt("--task", type=click.Choice(TASK_NAMES), default="qa",
         help="qa: extractive QA on SQuAD JSON; pair-classification: sentence pairs (TSV/JSONL, kdtool derive-pairs)."),
    _opt("--train", "train_file", required=True, type=click.Path(dir_okay=False),
         help="Training file: SQuAD JSON (qa) or pairs TSV/JSONL (pair-classification)."),
    _opt("--dev", "dev_file", type=click.Path(dir_okay=False), default=None,
         help="Dev file of the same kind: F1/EM (qa) or accuracy/F1 (pairs) after each epoch, the best epoch is kept."),
    _opt("-o", "--output", required=True, type=click.Path(file_okay=False),
         help="Output Hugging Face model directory (model, tokenizer, report, log)."),
    _opt("--lang", default="es", help="Answer normalisation of the F1/EM metric (es: MLQA rules, en: SQuAD)."),
    _opt("--max-length", type=int, default=384, help="Tokens per window (qa) or per pair (pair-classification)."),
    _opt("--doc-stride", type=int, default=128, help="Overlap between windows of a long context."),
    _opt("--max-query-length", type=int, default=64, help="Longest question in tokens."),
    _opt("--max-train-examples", type=int, default=None, help="Use only the first N training questions."),
    _opt("--max-dev-examples", type=int, default=None, help="Use only the first N dev questions."),
    _opt("--epochs", type=int, default=3, help="Epochs in all (both stages of a two-stage schedule)."),
    _opt("--batch-size", type=int, default=32, help="Global batch per optimizer step (all processes, all micro-steps)."),
    _opt("--grad-accum", type=int, default=1, help="Micro-steps per optimizer step."),
    _opt("--lr", type=FINITE, default=3e-5, help="Peak learning rate (AdamW)."),
    _opt("--weight-decay", type=FINITE, default=0.01, help="AdamW weight decay (not on biases and LayerNorm)."),
    _opt("--warmup", type=FINITE, default=0.1, help="Linear warm-up as a fraction of each stage's steps."),
    _opt("--max-grad-norm", type=FINITE, default=1.0, help="Gradient clipping norm."),
    _opt("--dropout", type=FINITE, default=None, help="Override the student's hidden and attention dropout."),
    _opt("--precision", type=click.Choice(PRECISIONS), default="auto",
         help="auto: bf16 (or fp16) mixed precision on a GPU, fp32 on CPU. bf16 also runs on a CPU with AVX512-BF16 or AMX (about 1.5x faster there)."),
    _opt("--seed", type=int, default=42, help="Seed of initialisation, data order and dropout."),
    _opt("--save-every", type=int, default=500, help="Optimizer steps between checkpoints."),
    _opt("--eval-batch-size", type=int, default=64, help="Batch size of evaluation and of the teacher-logits pass."),
    _opt("--work-dir", type=click.Path(file_okay=False), default=None,
         help="Run directory for checkpoints and logs [default: OUTPUT.work]."),
    _opt("--resume", is_flag=True, help="Continue the run in the run directory from its newest checkpoint."),
    _opt("--overwrite", is_flag=True, help="Replace an existing output directory and start the run over."),
    _opt("--stop-after", type=int, default=None, hidden=True, help="Stop after N optimizer steps (as if killed)."),
    _opt("--progress/--no-progress", default=True, help="Show a progress bar."),
    _opt("--qat", is_flag=True, help="Quantization-aware training: train the student fake-quantized to INT8 (weights "
         "per channel, activations at every Linear and at QK^T/PV; NVIDIA Model Optimizer); export it with "
         "kdtool export --precision int8-qat."),
    _opt("--qat-calibration-windows", type=int, default=128,
         help="Training windows of the calibration pass that initialises the INT8 scales (with --qat)."),
]


def training_options(fn):
    for option in reversed(TRAINING_OPTIONS):
        fn = option(fn)
    return fn


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


@click.command(context_settings={"show_default": True})
@click.argument("model", type=click.Path())
@click.option("--student", default=None, show_default=True,
              help="Train a new student (preset, bilstm, JSON config or model dir) on MODEL's tokenizer instead of MODEL itself.")
@_opt("--student-init", type=click.Choice(STUDENT_INITS), default="random",
      help="Weights of a new student: random, the base model's embeddings + mapped layers (teacher-layers), its "
           "bottom layers (teacher-bottom), or only its embeddings (teacher-embeddings; projected for a BiLSTM).")
@training_options
def command(**options):
    """Fine-tune MODEL (a model of the task, or a bare encoder, which gets a new head) on hard labels.

    With --qat, MODEL is fine-tuned fake-quantized to INT8 against its own FP32 copy as the teacher
    (logit distillation only: it learns to reproduce its FP32 self), the same run as kdtool distill
    MODEL --student MODEL --schedule prediction --attention-loss none --hard-weight 0 --qat."""
    from kdtool.distill import DistillConfig, TrainConfig, distill, finetune

    if not options["qat"]:
        finish(finetune(TrainConfig(**options)))
        return
    if options.pop("student") is not None:
        raise click.UsageError("finetune --qat quantizes MODEL itself against its FP32 copy; for a new student use "
                               "kdtool distill TEACHER --student ... --qat")
    model = options.pop("model")
    options.pop("student_init")
    finish(distill(DistillConfig(model=model, student=model, student_init="random", schedule="prediction",
                                 attention_loss="none", prediction_weight=1.0, hard_weight=0.0, **options)))
