"""``kdtool distill``: distil a teacher into a student with a strategy preset (TinyBERT by default).

Every loss, schedule, mapping and student option defaults to the ``--strategy`` preset
(kdtool.strategies); an option given on the command line overrides the preset.
"""

from __future__ import annotations

import click

from kdtool.cli.finetune import finish
from kdtool.cli.options import COUNT, TEMPERATURE, WEIGHT, option, training_options
from kdtool.distill.config import ATTENTION_LOSS_KINDS, PREDICTION_LOSS_KINDS, PROJECTIONS, SCHEDULES, STUDENT_INITS
from kdtool.distill.presets import ARCHITECTURES, PRESETS, RELATIVE_PRESETS
from kdtool.losses import LOSSES
from kdtool.progress import console
from kdtool.strategies import STRATEGIES

PRESET = "[default: from --strategy]"
STRATEGY_HELP = "; ".join(f"{s.name}: {s.reference}" for s in STRATEGIES.values())


def _preset_opt(*names, help: str, **kw):
    return option(*names, default=None, show_default=False, help=f"{help} {PRESET}", **kw)


def loss_weight_options(fn):
    """Decorator: one ``--<loss>-weight`` option per loss of the registry (kdtool.losses), in its order."""
    for spec in reversed(LOSSES.values()):
        fn = _preset_opt(spec.option, type=WEIGHT, help=f"Weight of {spec.about}.")(fn)
    return fn


@click.command(context_settings={"show_default": True})
@click.argument("teacher", type=click.Path(), metavar="TEACHER")
@option("--strategy", type=click.Choice(list(STRATEGIES)), default="tinybert",
        help=f"Preset of losses, schedule, layer map and student ({STRATEGY_HELP}). See kdtool.strategies.")
@_preset_opt("--student", help=f"Student: a preset ({', '.join([*PRESETS, *RELATIVE_PRESETS])}), an architecture "
             f"({', '.join(ARCHITECTURES)}), a JSON config of shape fields, or a model directory (else tinyroberta-es).")
@_preset_opt("--student-init", type=click.Choice(STUDENT_INITS),
             help="random; teacher-layers (mapped layers); teacher-bottom (layers 1..S); teacher-embeddings.")
@_preset_opt("--schedule", type=click.Choice(SCHEDULES),
             help="two-stage: intermediate losses, then prediction loss (TinyBERT); joint: all summed; prediction: logits only.")
@option("--intermediate-epochs", type=COUNT, default=None, help="Two-stage: epochs of stage 1 [default: half of --epochs].")
@_preset_opt("--attention-loss", type=click.Choice(ATTENTION_LOSS_KINDS),
             help="scores: TinyBERT pre-softmax MSE in closed form; probs: post-softmax MSE; none.")
@_preset_opt("--layer-map", help="uniform (k -> k*T/S), skip / last (PKD), or student:teacher pairs like 1:4,2:8.")
@_preset_opt("--projection", type=click.Choice(PROJECTIONS),
             help="Learned hidden-state projection student -> teacher width: one shared, one per layer, or none.")
@_preset_opt("--prediction-loss", type=click.Choice(PREDICTION_LOSS_KINDS),
             help="Soft loss on the logits: KL x T^2, soft cross-entropy, or MSE of raw logits.")
@_preset_opt("--temperature", type=TEMPERATURE, help="Temperature of the prediction loss.")
@loss_weight_options
@option("--cache-teacher-logits/--no-cache-teacher-logits", default=True,
        help="Compute the teacher's logits once for prediction-only epochs instead of every step.")
@training_options
def command(teacher, **options):
    """Distil TEACHER (a model directory of the task) into a student, with a --strategy preset."""
    from kdtool.distill import DistillConfig, distill

    bars = options.pop("progress")
    config = DistillConfig(model=teacher, **options)
    with console(bars=bars) as progress:
        report = distill(config, progress=progress)
    finish(report)
