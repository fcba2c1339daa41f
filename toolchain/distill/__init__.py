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

from kdtool.distill.config import DistillConfig, TrainConfig
from kdtool.distill.mapping import default_layer_map, head_groups, layer_map
from kdtool.distill.students import PRESETS, StudentShape, build_student
from kdtool.distill.trainer import distill, finetune, train

__all__ = [
    "DistillConfig", "PRESETS", "StudentShape", "TrainConfig", "build_student", "default_layer_map", "distill",
    "finetune", "head_groups", "layer_map", "train",
]
