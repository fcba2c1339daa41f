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
import logging
from dataclasses import asdict, dataclass, fields

from kdtool.data.features import MAX_LENGTH, FeatureConfig
from kdtool.distill.presets import ARCHITECTURES, PRESETS, RELATIVE_PRESETS
from kdtool.errors import InputError
from kdtool.fields import setting, shared
from kdtool.losses import ATTENTION_KINDS, LOSSES, PREDICTION_KINDS, weight_fields, with_weight_fields
from kdtool.metrics import lang_setting
from kdtool.strategies import STRATEGIES, get_strategy

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
log = logging.getLogger("kdtool.distill")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# fields that may change between a run and its resumption
RESUMABLE_FIELDS = {"resume", "overwrite", "stop_after", "work_dir", "output", "save_every", "eval_batch_size"}


def _count(default, help: str, **more):
    return setting(default, type="count", help=help, **more)


def _window(name: str):
    """``max_length``, ``doc_stride``, ``max_query_length``: FeatureConfig's, and written by every redo command."""
    return shared(FeatureConfig, name, always=True)


@dataclass(frozen=True)
class TrainConfig:
    """One supervised training run. ``model`` is what is trained, or, with ``student``, the base the
    student takes its tokenizer, vocabulary and (``student_init="teacher-layers"``) weights from.
    Each field's default, help and option are declared here (:mod:`kdtool.fields`): ``kdtool finetune``
    and ``kdtool distill`` are generated from them."""

    model: str = setting(argument=True)
    train_file: str = setting(option="--train", type="file", always=True,
                              help="Training file: SQuAD JSON (qa) or pairs TSV/JSONL (pair-classification).")
    output: str = setting(option=("-o", "--output"), type="dir", always=True,
                          help="Output Hugging Face model directory (model, tokenizer, report, log).")
    dev_file: str | None = setting(None, option="--dev", type="file", always=True,
                                   help="Dev file of the same kind: F1/EM (qa) or accuracy/F1 (pairs) after each epoch, "
                                        "the best epoch is kept.")
    task: str = setting("qa", choices=TASK_NAMES,  # qa (SQuAD JSON) or pair-classification (pairs TSV/JSONL)
                        help="qa: extractive QA on SQuAD JSON; pair-classification: sentence pairs (TSV/JSONL, "
                             "kdtool derive-pairs).")
    # preset name, JSON config or model directory; None: train ``model`` itself
    student: str | None = setting(None, help="Train a new student (preset, bilstm, JSON config or model dir) on MODEL's "
                                             "tokenizer instead of MODEL itself.")
    student_init: str = setting("random", choices=STUDENT_INITS,
                                help="Weights of a new student: random, the base model's embeddings + mapped layers "
                                     "(teacher-layers), its bottom layers (teacher-bottom), or only its embeddings "
                                     "(teacher-embeddings; projected for a BiLSTM).")
    lang: str = lang_setting(always=True)
    max_length: int | None = _window("max_length")  # None: MAX_LENGTH, or the model's positions when fewer (fit_window)
    doc_stride: int = _window("doc_stride")
    max_query_length: int = _window("max_query_length")
    max_train_examples: int | None = _count(None, "Use only the first N training questions.")
    max_dev_examples: int | None = _count(None, "Use only the first N dev questions.")
    epochs: int = _count(3, "Epochs in all (both stages of a two-stage schedule).")
    # per optimizer step over all processes (global batch)
    batch_size: int = _count(32, "Global batch per optimizer step (all processes, all micro-steps).")
    grad_accum: int = _count(1, "Micro-steps per optimizer step.")
    lr: float = setting(3e-5, type="rate", help="Peak learning rate (AdamW).")
    weight_decay: float = setting(0.01, type="weight", help="AdamW weight decay (not on biases and LayerNorm).")
    warmup: float = setting(0.1, type="fraction", help="Linear warm-up as a fraction of each stage's steps.")
    max_grad_norm: float = setting(1.0, type="weight", help="Gradient clipping norm.")
    dropout: float | None = setting(None, type="fraction", help="Override the student's hidden and attention dropout.")
    precision: str = setting("auto", choices=PRECISIONS,
                             help="auto: bf16 (or fp16) mixed precision on a GPU, fp32 on CPU. bf16 also runs on a CPU "
                                  "with AVX512-BF16 or AMX (about 1.5x faster there).")
    seed: int = setting(42, type="seed", help="Seed of initialisation, data order and dropout.")
    save_every: int = _count(500, "Optimizer steps between checkpoints.")
    eval_batch_size: int = _count(64, "Batch size of evaluation and of the teacher-logits pass.")
    # checkpoints, log, logits cache; default: <output>.work
    work_dir: str | None = setting(None, type="dir", help="Run directory for checkpoints and logs.",
                                   default_help="OUTPUT.work")
    resume: bool = setting(False, help="Continue the run in the run directory from its newest checkpoint.")
    overwrite: bool = setting(False, help="Replace an existing output directory and start the run over.")
    # stop (as if killed) after this many optimizer steps
    stop_after: int | None = _count(None, "Stop after N optimizer steps (as if killed).", hidden=True)
    # quantization-aware training: the student fake-quantized to INT8 (kdtool.models.qat)
    qat: bool = setting(False, help="Quantization-aware training: train the student fake-quantized to INT8 (weights "
                                    "per channel, activations at every Linear and at QK^T/PV; NVIDIA Model Optimizer); "
                                    "export it with kdtool export --precision int8-qat.")
    # training windows of the calibration pass that initialises the scales
    qat_calibration_windows: int = _count(128, "Training windows of the calibration pass that initialises the INT8 "
                                               "scales (with --qat).")

    def __post_init__(self):
        _check_choice("task", self.task, TASK_NAMES)
        _check_choice("student_init", self.student_init, STUDENT_INITS)
        _check_choice("precision", self.precision, PRECISIONS)
        for name in ("epochs", "batch_size", "grad_accum", "save_every", "eval_batch_size"):
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
        for name in ("max_length", "max_train_examples", "max_dev_examples", "stop_after"):
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
        keep["max_length"] = self.max_length or MAX_LENGTH  # not given: MAX_LENGTH (fitted to the model when it runs)
        keep["kind"] = type(self).__name__
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


PRESET = "from --strategy"
STRATEGY_HELP = "; ".join(f"{s.name}: {s.reference}" for s in STRATEGIES.values())


def _preset(help: str, **more):
    """A field a strategy preset fills when it is left at None."""
    return setting(None, help=help, default_help=PRESET, **more)


@dataclass(frozen=True)
@with_weight_fields(after="temperature", preset=False, spelling={"default_help": PRESET})
class DistillConfig(TrainConfig):
    """A distillation run: ``model`` is the teacher (a model directory of the task), ``student`` is required.

    Fields left at ``None`` come from the ``strategy`` preset (kdtool.strategies); ``tinybert`` gives
    the TinyBERT defaults (two stages, attention scores, shared projection, KL at T=1). After
    ``temperature`` come the ``<loss>_weight: float | None`` fields, one per registered loss
    (:func:`kdtool.losses.with_weight_fields`), in the registry's order: hard, prediction, embedding,
    hidden, cosine (DistilBERT: 1 - cos of the last hidden states), patient (PKD: normalised [CLS] MSE
    over mapped layers), attention.
    """

    strategy: str = setting("tinybert", choices=tuple(STRATEGIES),
                            help=f"Preset of losses, schedule, layer map and student ({STRATEGY_HELP}). See "
                                 "kdtool.strategies.")
    # default: the strategy's student, else tinyroberta-es
    student: str | None = _preset(f"Student: a preset ({', '.join([*PRESETS, *RELATIVE_PRESETS])}), an architecture "
                                  f"({', '.join(ARCHITECTURES)}), a JSON config of shape fields, or a model directory "
                                  f"(else {DEFAULT_STUDENT}).")
    student_init: str | None = _preset("random; teacher-layers (mapped layers); teacher-bottom (layers 1..S); "
                                       "teacher-embeddings.", choices=STUDENT_INITS)
    schedule: str | None = _preset("two-stage: intermediate losses, then prediction loss (TinyBERT); joint: all "
                                   "summed; prediction: logits only. A two-stage preset runs joint for a single epoch.",
                                   choices=SCHEDULES)
    # two-stage: epochs of stage 1 (default: half of --epochs)
    intermediate_epochs: int | None = setting(None, type="count", help="Two-stage: epochs of stage 1.",
                                              default_help="half of --epochs")
    attention_loss: str | None = _preset("scores: TinyBERT pre-softmax MSE in closed form; probs: post-softmax MSE; "
                                         "none.", choices=ATTENTION_LOSS_KINDS)
    # uniform (k -> k*T/S), skip, last, or pairs "1:4,2:8,..." student:teacher
    layer_map: str | None = _preset("uniform (k -> k*T/S), skip / last (PKD), or student:teacher pairs like 1:4,2:8.")
    projection: str | None = _preset("Learned hidden-state projection student -> teacher width: one shared, one per "
                                     "layer, or none.", choices=PROJECTIONS)
    prediction_loss: str | None = _preset("Soft loss on the logits: KL x T^2, soft cross-entropy, or MSE of raw "
                                          "logits.", choices=PREDICTION_LOSS_KINDS)
    temperature: float | None = _preset("Temperature of the prediction loss.", type="temperature")
    cache_teacher_logits: bool = setting(True, option="--cache-teacher-logits", off="--no-cache-teacher-logits",
                                         help="Compute the teacher's logits once for prediction-only epochs instead of "
                                              "every step.")

    def __post_init__(self):
        preset = get_strategy(self.strategy).config_defaults()
        if self.schedule is None:
            schedule = preset.get("schedule")
            object.__setattr__(self, "schedule", schedule and schedule_for(schedule, self.epochs, self.intermediate_epochs))
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
            raise InputError(f"two-stage needs 1 <= intermediate-epochs < epochs ({self.epochs}), got "
                             f"{self.stage_epochs[0]}; give --epochs 2 or more, or --schedule joint")

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


def schedule_for(schedule: str, epochs: int, intermediate_epochs: int | None) -> str:
    """The schedule a run takes when its schedule was not given (a strategy's, or prune's recovery default): a
    two-stage schedule has no room in one epoch, so that runs joint, said in one line. The rule of distill and
    prune; a two-stage schedule given explicitly on one epoch is refused instead (DistillConfig's check)."""
    if schedule == "two-stage" and epochs < 2 and intermediate_epochs is None:
        log.warning(f"two-stage needs 2 or more epochs (intermediate, then prediction): {epochs} epoch runs the joint "
                    "schedule (every loss summed); give --epochs 2 or more for two stages")
        return "joint"
    return schedule


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")
