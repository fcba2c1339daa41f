"""Setting a training run up: :func:`prepare_run` checks every input and builds the data and models
before anything is written; :func:`start_training` opens the run directory and builds the objective,
optimizer and schedule, restored from the newest checkpoint when resuming.

The order of the steps is part of the result: the seed is set before the student (and any projection)
is initialised, so a run is reproducible and a resumed run restores the same RNG stream.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from kdtool.atomic import check_output_dir
from kdtool.data import fit_window
from kdtool.distill.checkpoint import open_run_dir, set_rng_state, start_run_dir
from kdtool.distill.config import DistillConfig, TrainConfig
from kdtool.distill.mapping import head_groups, layer_map
from kdtool.distill.objective import Objective, check_attention_support
from kdtool.distill.runtime import make_accelerator
from kdtool.distill.state import RunLog, TrainState, epoch_stages, linear_schedule
from kdtool.distill.students import build_student
from kdtool.errors import InputError
from kdtool.models import load_task_model, load_tokenizer, max_positions
from kdtool.models.qat import calibration_batches, quantize_model
from kdtool.paths import guard_outputs
from kdtool.tasks import Task, get_task

if TYPE_CHECKING:
    from accelerate import Accelerator


@dataclass
class Run:
    """What a run is built from: the config, the places it writes, the data and the models."""

    config: TrainConfig
    task: Task
    output: Path
    work: Path  # the run directory: checkpoints, log, teacher-logits cache
    stages: list[str]  # the stage of every epoch
    acc: Accelerator  # processes, device, mixed precision
    micro: int  # windows per process per micro-step
    train_examples: list
    dev_examples: list
    tokenizer: object
    features: object  # the training windows (kdtool.tasks feature set)
    features_config: object
    steps_per_epoch: int
    teacher: torch.nn.Module | None
    student: torch.nn.Module
    student_desc: dict
    layer_map: dict[int, int] | None
    head_groups: object
    qat: dict | None  # the QAT summary, when the student is fake-quantized
    checkpoint: dict | None  # the newest checkpoint of a resumed run

    @property
    def kd(self) -> bool:
        return isinstance(self.config, DistillConfig)

    @property
    def impl(self):
        return self.task.module()

    @property
    def main(self) -> bool:
        return self.acc.is_main_process


@dataclass
class Training:
    """The trained parts: ``objective`` as Accelerate prepared it, ``core`` the module itself."""

    objective: torch.nn.Module
    core: Objective
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    log: RunLog | None  # main process only


def prepare_run(config: TrainConfig) -> Run:
    kd = isinstance(config, DistillConfig)
    task = get_task(config.task)
    output, work = _output_paths(config)
    stages = epoch_stages(config)
    acc = make_accelerator(config.precision, find_unused_parameters=kd and config.schedule != "joint")
    world = acc.num_processes
    if config.batch_size % (config.grad_accum * world):
        raise InputError(f"batch size {config.batch_size} must be a multiple of grad-accum x processes "
                         f"({config.grad_accum} x {world})")
    _set_seed(config.seed)
    impl = task.module()
    train_examples = impl.load_examples(config.train_file, config.max_train_examples)
    dev_examples = impl.load_examples(config.dev_file, config.max_dev_examples)
    tokenizer = load_tokenizer(config.model)
    teacher, student, desc, lmap, groups = _build_models(config, task, stages)
    fcfg = impl.feature_config(_window(config, teacher, student), config.doc_stride, config.max_query_length)
    features = impl.make_features(train_examples, tokenizer, fcfg, with_labels=True)
    steps_per_epoch = len(features) // config.batch_size
    if steps_per_epoch == 0:
        raise InputError(f"{config.train_file}: {len(features)} training windows, fewer than one batch of "
                         f"{config.batch_size}; use a smaller --batch-size or more data")
    qat = None
    if config.qat:  # fake-quantize the student before the objective and optimizer see its parameters
        qat = quantize_model(student, calibration_batches(features, config.qat_calibration_windows,
                                                          config.eval_batch_size), device=acc.device)
    checkpoint = open_run_dir(work, config, resume=config.resume, overwrite=config.overwrite)
    return Run(config, task, output, work, stages, acc, config.batch_size // (config.grad_accum * world),
               train_examples, dev_examples, tokenizer, features, fcfg, steps_per_epoch, teacher, student, desc, lmap,
               groups, qat, checkpoint)


def _output_paths(config: TrainConfig) -> tuple[Path, Path]:
    output = Path(config.output).absolute()
    work = Path(config.work_dir).absolute() if config.work_dir else output.with_name(output.name + ".work")
    check_output_dir(output, config.overwrite, kind="model")
    student = getattr(config, "student", None)
    guard_outputs({"MODEL": config.model, "--train": config.train_file, "--dev": config.dev_file,
                   "--student": student if student and Path(student).exists() else None},
                  {"--output": output, "--work-dir": work})
    return output, work


def _build_models(config: TrainConfig, task, stages: list[str]):
    """The teacher (distillation only), the student, and the layer map and head groups of the losses."""
    kd = isinstance(config, DistillConfig)
    teacher = None
    if kd:
        teacher = load_task_model(config.model, task, attn_implementation="sdpa").eval().requires_grad_(False)
    student, desc = build_student(config.student, config.model, init=config.student_init, dropout=config.dropout,
                                  layer_map_spec=config.layer_map if kd else None, base_model=teacher, task=task)
    lmap, groups = None, None
    if kd and config.schedule != "prediction":  # only intermediate losses read layers
        lmap = layer_map(student.config.num_hidden_layers, teacher.config.num_hidden_layers, config.layer_map)
        if config.attention_loss != "none" and set(stages) & {"intermediate", "joint"}:
            check_attention_support(student)
            check_attention_support(teacher)
            groups = head_groups(student.config.num_attention_heads, teacher.config.num_attention_heads)
    return teacher, student, desc, lmap, groups


def _window(config: TrainConfig, teacher, student) -> int:
    """The training window: --max-length, or the default fitted to the model with the fewest positions
    (:func:`kdtool.data.fit_window`: a default clips, saying so; a length given that a model cannot take is refused)."""
    limits = [(max_positions(m.config), name) for m, name in ((teacher, config.model),
                                                               (student, config.student or config.model)) if m is not None]
    limit, name = min(((n, who) for n, who in limits if n), default=(None, config.model))
    return fit_window(config.max_length, limit, model=name)


def _set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _param_groups(module, weight_decay: float):
    decay = [p for p in module.parameters() if p.requires_grad and p.ndim >= 2]
    rest = [p for p in module.parameters() if p.requires_grad and p.ndim < 2]  # biases, LayerNorm
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def start_training(run: Run) -> tuple[Training, TrainState]:
    """Open the run directory and build what is trained; a resumed run continues from its checkpoint."""
    config, acc = run.config, run.acc
    acc.wait_for_everyone()
    if run.main and run.checkpoint is None:
        start_run_dir(run.work, config)
    acc.wait_for_everyone()
    objective = Objective(run.student, config=config if run.kd else None, layer_map=run.layer_map,
                          teacher_hidden=run.teacher.config.hidden_size if run.kd else 0, task=run.task)
    optimizer = torch.optim.AdamW(_param_groups(objective, config.weight_decay), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(run.stages, run.steps_per_epoch,
                                                                             config.warmup))
    objective, optimizer = acc.prepare(objective, optimizer)
    if run.teacher is not None:
        run.teacher.to(acc.device)
    core = acc.unwrap_model(objective)
    state = TrainState()
    if run.checkpoint is not None:
        saved = run.checkpoint
        core.load_state_dict(saved["objective"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if saved.get("scaler") and getattr(acc, "scaler", None) is not None:
            acc.scaler.load_state_dict(saved["scaler"])
        state = TrainState.from_checkpoint(saved)
        set_rng_state(saved["rng"])
    log = RunLog(run.work / "train_log.jsonl", state.global_step) if run.main else None
    return Training(objective, core, optimizer, scheduler, log), state
