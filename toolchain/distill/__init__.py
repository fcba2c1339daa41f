"""Distillation (TinyBERT by default, or any strategy of kdtool.strategies) and plain fine-tuning,
for every task of kdtool.tasks (extractive QA, sentence-pair classification).

    kdtool.distill.distill(DistillConfig(...))   teacher -> student (``kdtool distill --strategy NAME``)
    kdtool.distill.finetune(TrainConfig(...))    hard labels only (``kdtool finetune``)
    kdtool.distill.attention_score_mse(...)      the memory-free TinyBERT attention loss

Modules: ``losses`` (the losses), ``mapping`` (layers and heads), ``students`` (presets, student
construction), ``objective`` (one step's loss), ``trainer`` (the loop), ``checkpoint`` (atomic
checkpoints, exact resume), ``logits_cache`` (teacher logits on disk), ``runtime`` (Accelerate, evaluation).
"""

from kdtool.distill.config import DistillConfig, TrainConfig
from kdtool.distill.losses import (
                                   attention_prob_mse,
                                   attention_score_mse,
                                   attention_score_mse_explicit,
                                   hidden_mse,
                                   prediction_loss,
                                   span_loss,
)
from kdtool.distill.mapping import default_layer_map, head_groups, layer_map
from kdtool.distill.students import PRESETS, StudentShape, build_student
from kdtool.distill.trainer import distill, finetune, train

__all__ = [
    "DistillConfig", "PRESETS", "StudentShape", "TrainConfig", "attention_prob_mse", "attention_score_mse",
    "attention_score_mse_explicit", "build_student", "default_layer_map", "distill", "finetune", "head_groups",
    "hidden_mse", "layer_map", "prediction_loss", "span_loss", "train",
]
