"""``kdtool distill``: TinyBERT distillation of a QA teacher into a student."""

from __future__ import annotations

import click

from kdtool.cli.finetune import _opt, finish, training_options
from kdtool.distill.config import ATTENTION_LOSS_KINDS, PREDICTION_LOSS_KINDS, PROJECTIONS, SCHEDULES
from kdtool.distill.students import PRESETS


@click.command(context_settings={"show_default": True})
@click.argument("teacher", type=click.Path(), metavar="TEACHER")
@_opt("--student", default="tinyroberta-es",
      help=f"Student: a preset ({', '.join(PRESETS)}), a JSON config of shape fields, or a model directory.")
@_opt("--schedule", type=click.Choice(SCHEDULES), default="two-stage",
      help="two-stage: intermediate losses, then prediction loss (TinyBERT); joint: all summed; prediction: logits only.")
@_opt("--intermediate-epochs", type=int, default=None, help="Two-stage: epochs of stage 1 [default: half of --epochs].")
@_opt("--attention-loss", type=click.Choice(ATTENTION_LOSS_KINDS), default="scores",
      help="scores: TinyBERT pre-softmax MSE in closed form; probs: post-softmax MSE; none.")
@_opt("--layer-map", default=None, help="Student:teacher layer pairs, e.g. 1:4,2:8 [default: k -> k*T/S].")
@_opt("--projection", type=click.Choice(PROJECTIONS), default="shared",
      help="Learned hidden-state projection student -> teacher width: one shared, or one per layer.")
@_opt("--prediction-loss", type=click.Choice(PREDICTION_LOSS_KINDS), default="kl",
      help="Soft loss on start/end logits: KL x T^2, or soft cross-entropy.")
@_opt("--temperature", type=float, default=1.0, help="Temperature of the prediction loss.")
@_opt("--attention-weight", type=float, default=1.0, help="Weight of the attention loss.")
@_opt("--hidden-weight", type=float, default=1.0, help="Weight of the hidden-state loss.")
@_opt("--embedding-weight", type=float, default=1.0, help="Weight of the embedding (layer 0) loss.")
@_opt("--prediction-weight", type=float, default=1.0, help="Weight of the soft prediction loss.")
@_opt("--hard-weight", type=float, default=0.0, help="Weight of the hard-label span loss in prediction epochs.")
@_opt("--cache-teacher-logits/--no-cache-teacher-logits", default=True,
      help="Compute the teacher's logits once for prediction-only epochs instead of every step.")
@training_options
def command(teacher, **options):
    """Distil TEACHER (a question-answering model directory) into a student."""
    from kdtool.distill import DistillConfig, distill

    finish(distill(DistillConfig(model=teacher, **options)))
