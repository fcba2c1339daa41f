"""Configs of a training run: :class:`TrainConfig` (fine-tuning, and everything distillation shares)
and :class:`DistillConfig` (adds the teacher's losses and the schedule). Plain dataclasses; the CLI
builds them from its options and :func:`kdtool.distill.finetune` / :func:`kdtool.distill.distill`
take them as they are.

``task`` (kdtool.tasks: ``qa`` or ``pair-classification``) decides the data, features, heads and
metrics. ``DistillConfig.strategy`` (kdtool.strategies) is a preset: every loss, schedule, mapping
and student field left at ``None`` is filled from it, so explicit values always win. The loss weights
(``<loss>_weight``) are one field per loss of the registry (:mod:`kdtool.losses`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

from kdtool.errors import InputError
from kdtool.losses import ATTENTION_KINDS, LOSSES, PREDICTION_KINDS, weight_fields, with_weight_fields
from kdtool.strategies import get_strategy

SCHEDULES = ("two-stage", "joint", "prediction")
ATTENTION_LOSS_KINDS = (*ATTENTION_KINDS, "none")
PREDICTION_LOSS_KINDS = PREDICTION_KINDS
PROJECTIONS = ("shared", "per-layer", "none")
STUDENT_INITS = ("random", "teacher-layers", "teacher-bottom", "teacher-embeddings")
TASK_NAMES = ("qa", "pair-classification")


def strategy_fields() -> tuple[str, ...]:
    """The DistillConfig fields a strategy preset fills when they are left at ``None``."""
    return ("schedule", "attention_loss", "layer_map", "projection", "prediction_loss", "temperature",
            *weight_fields(), "student", "student_init")


DEFAULT_STUDENT = "tinyroberta-es"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# fields that may change between a run and its resumption
RESUMABLE_FIELDS = {"resume", "overwrite", "stop_after", "work_dir", "output", "save_every", "eval_batch_size"}


@dataclass(frozen=True)
class TrainConfig:
    """One supervised training run. ``model`` is what is trained, or, with ``student``, the base the
    student takes its tokenizer, vocabulary and (``student_init="teacher-layers"``) weights from."""

    model: str
    train_file: str
    output: str
    dev_file: str | None = None
    task: str = "qa"  # qa (SQuAD JSON) or pair-classification (pairs TSV/JSONL)
    student: str | None = None  # preset name, JSON config or model directory; None: train ``model`` itself
    student_init: str = "random"
    lang: str = "es"
    max_length: int = 384
    doc_stride: int = 128
    max_query_length: int = 64
    max_train_examples: int | None = None
    max_dev_examples: int | None = None
    epochs: int = 3
    batch_size: int = 32  # per optimizer step over all processes (global batch)
    grad_accum: int = 1
    lr: float = 3e-5
    weight_decay: float = 0.01
    warmup: float = 0.1  # fraction of each stage's steps
    max_grad_norm: float = 1.0
    dropout: float | None = None  # override the student's hidden/attention dropout
    precision: str = "auto"
    seed: int = 42
    save_every: int = 500  # optimizer steps between checkpoints
    eval_batch_size: int = 64
    work_dir: str | None = None  # checkpoints, log, logits cache; default: <output>.work
    resume: bool = False
    overwrite: bool = False
    stop_after: int | None = None  # stop (as if killed) after this many optimizer steps
    qat: bool = False  # quantization-aware training: the student fake-quantized to INT8 (kdtool.models.qat)
    qat_calibration_windows: int = 128  # training windows of the calibration pass that initialises the scales

    def __post_init__(self):
        _check_choice("task", self.task, TASK_NAMES)
        _check_choice("student_init", self.student_init, STUDENT_INITS)
        _check_choice("precision", self.precision, PRECISIONS)
        for name in ("epochs", "batch_size", "grad_accum", "max_length", "save_every", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise InputError(f"{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.batch_size % self.grad_accum:
            raise InputError(f"batch size {self.batch_size} is not a multiple of grad-accum {self.grad_accum}")
        if not 0 <= self.warmup < 1:
            raise InputError(f"warmup must be a fraction in [0, 1), got {self.warmup}")
        if self.lr <= 0:
            raise InputError(f"learning rate must be positive, got {self.lr}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise InputError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.qat and self.precision == "fp16":
            raise InputError("--qat trains the INT8 graph's fake-quantized weights in fp32 or bf16; fp16 loses the "
                             "scales' resolution: use --precision fp32, bf16 or auto")
        if self.qat_calibration_windows < 1:
            raise InputError(f"qat-calibration-windows must be at least 1, got {self.qat_calibration_windows}")
        self._check_ranges()

    def _check_ranges(self) -> None:
        """The bounds the command line checks at parse time, for configs built by recipes and library callers."""
        if not 0 <= self.seed < 2**32:
            raise InputError(f"seed must be between 0 and 2**32 - 1, got {self.seed}")
        for name in ("max_train_examples", "max_dev_examples", "stop_after"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise InputError(f"{name.replace('_', '-')} must be at least 1 (or left out), got {getattr(self, name)}")

    @property
    def teacher(self) -> str | None:
        return None

    def to_dict(self) -> dict:
        return asdict(self)

    def fingerprint(self) -> str:
        """A hash of everything that decides the trained weights (what a resumed run must share)."""
        keep = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in RESUMABLE_FIELDS}
        keep["kind"] = type(self).__name__
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
@with_weight_fields(after="temperature", preset=False)
class DistillConfig(TrainConfig):
    """A distillation run: ``model`` is the teacher (a model directory of the task), ``student`` is required.

    Fields left at ``None`` come from the ``strategy`` preset (kdtool.strategies); ``tinybert`` gives
    the TinyBERT defaults (two stages, attention scores, shared projection, KL at T=1). After
    ``temperature`` come the ``<loss>_weight: float | None`` fields, one per registered loss
    (:func:`kdtool.losses.with_weight_fields`), in the registry's order: hard, prediction, embedding,
    hidden, cosine (DistilBERT: 1 - cos of the last hidden states), patient (PKD: normalised [CLS] MSE
    over mapped layers), attention.
    """

    strategy: str = "tinybert"
    student: str | None = None  # default: the strategy's student, else tinyroberta-es
    student_init: str | None = None
    schedule: str | None = None
    intermediate_epochs: int | None = None  # two-stage: epochs of stage 1 (default: half of --epochs)
    attention_loss: str | None = None
    layer_map: str | None = None  # uniform (k -> k*T/S), skip, last, or pairs "1:4,2:8,..." student:teacher
    projection: str | None = None
    prediction_loss: str | None = None
    temperature: float | None = None
    cache_teacher_logits: bool = True

    def __post_init__(self):
        preset = get_strategy(self.strategy).config_defaults()
        for name in strategy_fields():
            if getattr(self, name) is None:
                object.__setattr__(self, name, preset.get(name, DEFAULT_STUDENT if name == "student" else None))
        super().__post_init__()
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("attention-loss", self.attention_loss, ATTENTION_LOSS_KINDS)
        _check_choice("prediction-loss", self.prediction_loss, PREDICTION_LOSS_KINDS)
        _check_choice("projection", self.projection, PROJECTIONS)
        if not self.student:
            raise InputError("distillation needs a student: a preset name, a JSON config or a model directory")
        if not 0 < self.temperature <= 1000:
            raise InputError(f"temperature must be above 0 and at most 1000 (T^2 scales the soft loss), "
                             f"got {self.temperature:g}")
        for spec in LOSSES.values():
            if getattr(self, spec.weight_field) < 0:
                raise InputError(f"{spec.option.lstrip('-')} must not be negative")
            if getattr(self, spec.weight_field) > 1e6:
                raise InputError(f"{spec.option.lstrip('-')} must be at most 1e6, got {getattr(self, spec.weight_field):g}")
        if self.schedule == "two-stage" and not 1 <= self.stage_epochs[0] < self.epochs:
            raise InputError(f"two-stage needs 1 <= intermediate-epochs < epochs ({self.epochs}), "
                             f"got {self.stage_epochs[0]}")

    @property
    def teacher(self) -> str:
        return self.model

    @property
    def stage_epochs(self) -> tuple[int, int]:
        """(intermediate, prediction-or-joint) epochs."""
        if self.schedule == "two-stage":
            inter = self.intermediate_epochs if self.intermediate_epochs is not None else self.epochs // 2
            return inter, self.epochs - inter
        return 0, self.epochs


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")
