"""Distillation (TinyBERT by default, or any strategy of kdtool.strategies) and plain fine-tuning,
for every task of kdtool.tasks (extractive QA, sentence-pair classification).

    kdtool.distill.distill(DistillConfig(...))   teacher -> student (``kdtool distill --strategy NAME``)
    kdtool.distill.finetune(TrainConfig(...))    hard labels only (``kdtool finetune``)

The losses and their registry are the package :mod:`kdtool.losses`. Modules: ``config`` (the run's
typed config), ``mapping`` (layers and heads), ``students`` (presets, student construction),
``objective`` (one step's loss), ``trainer`` (the loop and its steps), ``prepare`` (checked inputs,
data and models; objective and optimizer, restored on resume), ``state`` (schedule, the typed
bookkeeping, the step log), ``finish`` (report and output directory), ``checkpoint`` (atomic
checkpoints, exact resume), ``logits_cache`` (teacher logits on disk), ``runtime`` (Accelerate, evaluation).
"""

from importlib import import_module

# name -> its module, imported when the name is first asked for: the command-line options import
# ``kdtool.distill.config`` (light) and must not load the trainer and students (torch, transformers) with it
_NAMES = {
    **dict.fromkeys(("DistillConfig", "TrainConfig"), "kdtool.distill.config"),
    **dict.fromkeys(("default_layer_map", "head_groups", "layer_map"), "kdtool.distill.mapping"),
    **dict.fromkeys(("PRESETS", "StudentShape"), "kdtool.distill.presets"),
    "build_student": "kdtool.distill.students",
    **dict.fromkeys(("distill", "finetune", "train"), "kdtool.distill.trainer"),
}


def __getattr__(name: str):
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_NAMES[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "DistillConfig", "PRESETS", "StudentShape", "TrainConfig", "build_student", "default_layer_map", "distill",
    "finetune", "head_groups", "layer_map", "train",
]
