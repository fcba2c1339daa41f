"""The one trainer behind ``kdtool finetune`` (no teacher) and ``kdtool distill`` (a teacher).

Tasks and strategies are configuration, not loops: ``config.task`` (kdtool.tasks) supplies the
examples, features, model head, hard loss and evaluation; a distillation strategy (kdtool.strategies)
only fills the loss weights, schedule, layer map and student of the :class:`DistillConfig`.

Reading order: :func:`train` is the loop. :func:`~kdtool.distill.prepare.prepare_run` checks every
input before anything is written and builds data and models; :func:`~kdtool.distill.prepare.start_training`
builds the :class:`~kdtool.distill.objective.Objective` and optimizer (restored when resuming); then
each epoch runs :func:`optimization_step` over its batches, :func:`evaluate_epoch` and :func:`save`;
:func:`~kdtool.distill.finish.finish_run` writes the output. Each epoch has a stage (``finetune``,
``intermediate``, ``prediction`` or ``joint``) that decides the loss components (kdtool.losses).

Determinism and exact resume: the data order of an epoch is a permutation drawn from (seed, epoch);
a global batch of ``batch_size`` windows is split into ``grad_accum`` micro-steps and, within each,
into one contiguous slice per process, all padded to the global batch's longest window. Checkpoints
keep the data position and every RNG state, so on CPU a resumed run ends with the same weights as an
uninterrupted one, and N processes follow the loss trajectory of one process with the same global batch.

Progress: the main process reports ``count(progress, "train", step, total, "step")`` after every
optimizer step and a line per evaluated epoch (kdtool.progress); the library draws nothing.
"""

from __future__ import annotations

import contextlib
import time

import torch

from kdtool.atomic import atomic_directory
from kdtool.distill.checkpoint import discard_runs_without_checkpoint, forget_started_runs, rng_state, save_checkpoint
from kdtool.distill.config import DistillConfig, TrainConfig
from kdtool.distill.finish import finish_run
from kdtool.distill.logits_cache import build_logits_cache
from kdtool.distill.objective import model_inputs, task_outputs, teacher_targets
from kdtool.distill.prepare import Run, Training, prepare_run, start_training
from kdtool.distill.state import TrainState, epoch_order
from kdtool.losses import reads_hidden
from kdtool.progress import Progress, count, say


def finetune(config: TrainConfig, *, progress: Progress | None = None) -> dict:
    """Train ``config.model`` (or a student built on it) on hard labels only; returns the report."""
    return _train_or_discard(config, progress)


def distill(config: DistillConfig, *, progress: Progress | None = None) -> dict:
    """Distil the teacher ``config.model`` into ``config.student``; returns the report."""
    return _train_or_discard(config, progress)


def _train_or_discard(config: TrainConfig, progress: Progress | None) -> dict:
    forget_started_runs()
    try:
        return train(config, progress=progress)
    except Exception:  # a failed run leaves no run directory without a checkpoint behind (see checkpoint.py)
        discard_runs_without_checkpoint()
        raise


def train(config: TrainConfig, *, progress: Progress | None = None) -> dict:
    """Run ``config`` to the end (or to ``stop_after``); returns the report (``{"worker": rank}`` on
    other processes, ``{"stopped": True, ...}`` when stopped early)."""
    run = prepare_run(config)
    training, state = start_training(run)
    progress = progress if run.main else None
    total = run.steps_per_epoch * len(run.stages)
    cache = None
    training.objective.train()
    while state.epoch < len(run.stages):
        stage = run.stages[state.epoch]
        if cache is None and run.kd and stage == "prediction" and config.cache_teacher_logits:
            cache = teacher_logits_cache(run, state)
        order = epoch_order(config.seed, state.epoch, len(run.features))
        for step in range(state.step, run.steps_per_epoch):
            optimization_step(run, training, state, stage, order[step * config.batch_size:(step + 1) * config.batch_size],
                              cache)
            state.step = step + 1
            count(progress, "train", state.global_step, total, "step")
            if state.global_step % config.save_every == 0:
                save(run, training, state)
            if config.stop_after and state.global_step >= config.stop_after:
                return {"stopped": True, "step": state.global_step, "work_dir": str(run.work)} if run.main else {
                    "worker": run.acc.process_index}
        if run.dev_examples and run.main:
            evaluate_epoch(run, training, state, stage, progress)
        state.epoch, state.step = state.epoch + 1, 0
        save(run, training, state)
    return finish_run(run, training, state)


def teacher_logits_cache(run: Run, state: TrainState):
    """The teacher's logits of every training window, computed once (main process) and read by all."""
    config, acc, task = run.config, run.acc, run.task
    t0 = time.perf_counter()

    def run_teacher(np_batch):
        with torch.no_grad(), acc.autocast():
            out = run.teacher(**{k: torch.from_numpy(v).to(acc.device) for k, v in model_inputs(np_batch).items()})
        return tuple(o.float().cpu().numpy() for o in task_outputs(out, task))

    cache = None
    if run.main:
        cache = build_logits_cache(run.work / "teacher_logits", run_teacher, run.features,
                                   batch_size=config.eval_batch_size, key=config.fingerprint(), per_token=task.per_token)
    acc.wait_for_everyone()
    if not run.main:
        cache = build_logits_cache(run.work / "teacher_logits", None, run.features, batch_size=0,
                                   key=config.fingerprint(), per_token=task.per_token)
    state.add_seconds("teacher_logits_cache", time.perf_counter() - t0)
    return cache


def optimization_step(run: Run, training: Training, state: TrainState, stage: str, ids: list[int], cache) -> None:
    """One optimizer step on the global batch ``ids``: ``grad_accum`` micro-steps, this process's slice of each."""
    config, acc = run.config, run.acc
    t0 = time.perf_counter()
    length = max(len(run.features.input_ids[i]) for i in ids)
    world, rank = acc.num_processes, acc.process_index
    sums: dict[str, torch.Tensor] = {}
    for a in range(config.grad_accum):
        local = ids[(a * world + rank) * run.micro:(a * world + rank + 1) * run.micro]
        batch = {k: torch.from_numpy(v).to(acc.device)
                 for k, v in run.features.batch(local, length=length, labels=True).items()}
        targets = _targets(run, training, stage, batch, local, length, cache)
        sync = acc.no_sync(training.objective) if a < config.grad_accum - 1 else contextlib.nullcontext()
        with sync:
            losses = training.objective(batch, stage, targets)
            acc.backward(losses["loss"] / config.grad_accum)
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v.detach().float() / config.grad_accum
    grad_norm = acc.clip_grad_norm_(training.objective.parameters(), config.max_grad_norm)
    optimizer = training.optimizer
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    if not getattr(optimizer, "step_was_skipped", False):
        training.scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    state.global_step += 1
    names = sorted(sums)
    values = acc.reduce(torch.stack([sums[n] for n in names]), reduction="mean").tolist()
    state.add_seconds(stage, time.perf_counter() - t0)
    if run.main:
        training.log.write({"step": state.global_step, "epoch": state.epoch, "stage": stage,
                            **dict(zip(names, values, strict=True)), "grad_norm": float(grad_norm), "lr": lr})


def _targets(run: Run, training: Training, stage: str, batch: dict, local: list[int], length: int, cache) -> dict | None:
    """What the student learns from in this micro-step: cached teacher logits, or a teacher pass."""
    if not run.kd:
        return None
    if stage == "prediction" and cache is not None:
        return {"outputs": cache.batch(local, length, run.acc.device)}
    attention = run.config.attention_loss != "none"
    with run.acc.autocast():
        return teacher_targets(run.teacher, batch, stage, run.layer_map, attention, run.task,
                               needs_hidden=reads_hidden(training.core.components(stage)))


def evaluate_epoch(run: Run, training: Training, state: TrainState, stage: str, progress: Progress | None) -> None:
    """Score the student on the dev set (main process); keep it in ``work/best`` when it is the best so far."""
    t0 = time.perf_counter()
    task, student = run.task, training.core.student
    result = run.impl.evaluate(student, run.tokenizer, run.dev_examples, run.features_config,
                               batch_size=run.config.eval_batch_size, lang=run.config.lang, device=run.acc.device)
    entry = {"epoch": state.epoch + 1, "step": state.global_step, "stage": stage, **{m: result[m] for m in task.metrics}}
    state.evals.append(entry)
    key = task.primary_metric
    if state.best is None or entry[key] > state.best[key]:
        state.best = entry
        with atomic_directory(run.work / "best", overwrite=True, kind="best-student") as tmp:
            student.save_pretrained(tmp)
    state.add_seconds("evaluation", time.perf_counter() - t0)
    say(progress, f"epoch {state.epoch + 1}/{len(run.stages)} ({stage}): dev "
        + "  ".join(f"{m} {entry[m]:.2f}" for m in task.metrics))


def save(run: Run, training: Training, state: TrainState) -> None:
    """A checkpoint of everything a resumed run needs (main process), then a barrier."""
    if run.main:
        scaler = getattr(run.acc, "scaler", None)
        save_checkpoint(run.work, state.global_step, {
            "objective": training.core.state_dict(), "optimizer": training.optimizer.state_dict(),
            "scheduler": training.scheduler.state_dict(), "scaler": scaler.state_dict() if scaler is not None else None,
            **state.checkpoint_fields(), "rng": rng_state()})
    run.acc.wait_for_everyone()
