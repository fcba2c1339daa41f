"""The one trainer behind ``kdtool finetune`` (no teacher) and ``kdtool distill`` (a teacher).

Tasks and strategies are configuration, not loops: ``config.task`` (kdtool.tasks) supplies the
examples, features, model head, hard loss and evaluation; a distillation strategy (kdtool.strategies)
only fills the loss weights, schedule, layer map and student of the :class:`DistillConfig`.

Reading order: :func:`train` checks every input before anything is written, builds the student and
the :class:`~kdtool.distill.objective.Objective`, then runs epochs of optimizer steps. Each epoch has a
stage (``finetune``, ``intermediate``, ``prediction`` or ``joint``) that decides the loss components.

Determinism and exact resume: the data order of an epoch is a permutation drawn from (seed, epoch);
a global batch of ``batch_size`` windows is split into ``grad_accum`` micro-steps and, within each,
into one contiguous slice per process, all padded to the global batch's longest window. Checkpoints
keep the data position and every RNG state, so on CPU a resumed run ends with the same weights as an
uninterrupted one, and N processes follow the loss trajectory of one process with the same global batch.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from kdtool.atomic import atomic_directory, atomic_write_json, atomic_write_text, check_output_dir
from kdtool.distill.checkpoint import (
    discard_runs_without_checkpoint,
    forget_started_runs,
    open_run_dir,
    rng_state,
    save_checkpoint,
    set_rng_state,
    start_run_dir,
)
from kdtool.distill.config import DistillConfig, TrainConfig
from kdtool.distill.logits_cache import build_logits_cache
from kdtool.distill.mapping import head_groups, layer_map
from kdtool.distill.objective import INTERMEDIATE, Objective, check_attention_support, model_inputs, task_outputs, teacher_targets
from kdtool.distill.runtime import make_accelerator
from kdtool.distill.students import build_student
from kdtool.errors import InputError
from kdtool.models import count_parameters, load_task_model, load_tokenizer, max_positions
from kdtool.paths import guard_outputs
from kdtool.tasks import get_task


def finetune(config: TrainConfig) -> dict:
    """Train ``config.model`` (or a student built on it) on hard labels only; returns the report."""
    return _train_or_discard(config)


def distill(config: DistillConfig) -> dict:
    """Distil the teacher ``config.model`` into ``config.student``; returns the report."""
    return _train_or_discard(config)


def _train_or_discard(config: TrainConfig) -> dict:
    forget_started_runs()
    try:
        return train(config)
    except Exception:  # a failed run leaves no run directory without a checkpoint behind (see checkpoint.py)
        discard_runs_without_checkpoint()
        raise


def epoch_stages(config: TrainConfig) -> list[str]:
    if not isinstance(config, DistillConfig):
        return ["finetune"] * config.epochs
    if config.schedule == "two-stage":
        inter, pred = config.stage_epochs
        return ["intermediate"] * inter + ["prediction"] * pred
    return [config.schedule] * config.epochs


def epoch_order(seed: int, epoch: int, n: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()


def linear_schedule(stages: list[str], steps_per_epoch: int, warmup: float):
    """LR factor per optimizer step: linear warm-up then linear decay, restarted at each stage."""
    segments, start = [], 0
    for i, stage in enumerate(stages):
        if i == 0 or stage != stages[i - 1]:
            segments.append([start, 0])
        segments[-1][1] += steps_per_epoch
        start += steps_per_epoch
    def factor(step: int) -> float:
        s0, n = next((s, n) for s, n in segments if step < s + n or (s, n) == tuple(segments[-1]))
        local, warm = step - s0, int(warmup * n)
        if local < warm:
            return (local + 1) / (warm + 1)
        return max(0.0, (n - local) / max(1, n - warm))
    return factor


def describe_model(model) -> dict:
    c = model.config
    return {"model_type": c.model_type, "parameters": count_parameters(model), "layers": c.num_hidden_layers,
            "hidden": c.hidden_size, "heads": getattr(c, "num_attention_heads", None),
            "intermediate": getattr(c, "intermediate_size", None)}


class RunLog:
    """``train_log.jsonl``: one line per optimizer step; reopening drops lines past the resumed step."""

    def __init__(self, path: Path, keep_until: int):
        self.path = path
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        kept = [ln for ln in lines if ln.strip() and json.loads(ln)["step"] <= keep_until]
        atomic_write_text(path, "".join(ln + "\n" for ln in kept))
        self.fh = path.open("a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self.fh.write(json.dumps(record) + "\n")
        self.fh.flush()


def _param_groups(module, weight_decay: float):
    decay = [p for p in module.parameters() if p.requires_grad and p.ndim >= 2]
    rest = [p for p in module.parameters() if p.requires_grad and p.ndim < 2]  # biases, LayerNorm
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(config: TrainConfig) -> dict:
    kd = isinstance(config, DistillConfig)
    task = get_task(config.task)
    impl = task.module()
    output = Path(config.output).absolute()
    work = Path(config.work_dir).absolute() if config.work_dir else output.with_name(output.name + ".work")
    check_output_dir(output, config.overwrite, kind="model")
    student = getattr(config, "student", None)
    guard_outputs({"MODEL": config.model, "--train": config.train_file, "--dev": config.dev_file,
                   "--student": student if student and Path(student).exists() else None},
                  {"--output": output, "--work-dir": work})
    stages = epoch_stages(config)
    acc = make_accelerator(config.precision, find_unused_parameters=kd and config.schedule != "joint")
    world, rank, main = acc.num_processes, acc.process_index, acc.is_main_process
    if config.batch_size % (config.grad_accum * world):
        raise InputError(f"batch size {config.batch_size} must be a multiple of grad-accum x processes "
                         f"({config.grad_accum} x {world})")
    micro = config.batch_size // (config.grad_accum * world)
    _set_seed(config.seed)

    # ---- inputs, all checked before anything is written
    train_examples = impl.load_examples(config.train_file, config.max_train_examples)
    dev_examples = impl.load_examples(config.dev_file, config.max_dev_examples)
    tokenizer = load_tokenizer(config.model)
    teacher = None
    if kd:
        teacher = load_task_model(config.model, task, attn_implementation="sdpa").eval().requires_grad_(False)
    student, student_desc = build_student(config.student, config.model, init=config.student_init, dropout=config.dropout,
                                          layer_map_spec=config.layer_map if kd else None, base_model=teacher, task=task)
    lmap, groups = None, None
    if kd and config.schedule != "prediction":  # only intermediate losses read layers
        lmap = layer_map(student.config.num_hidden_layers, teacher.config.num_hidden_layers, config.layer_map)
        if config.attention_loss != "none" and set(stages) & {"intermediate", "joint"}:
            check_attention_support(student)
            check_attention_support(teacher)
            groups = head_groups(student.config.num_attention_heads, teacher.config.num_attention_heads)
    limit = min(max_positions(m.config) or config.max_length for m in filter(None, (student, teacher)))
    if config.max_length > limit:
        raise InputError(f"--max-length {config.max_length} exceeds the {limit} positions the model accepts")
    fcfg = impl.feature_config(config.max_length, config.doc_stride, config.max_query_length)
    features = impl.make_features(train_examples, tokenizer, fcfg, with_labels=True)
    steps_per_epoch = len(features) // config.batch_size
    if steps_per_epoch == 0:
        raise InputError(f"{config.train_file}: {len(features)} training windows, fewer than one batch of "
                         f"{config.batch_size}; use a smaller --batch-size or more data")
    qat = None
    if config.qat:  # fake-quantize the student before the objective and optimizer see its parameters
        from kdtool.models.qat import calibration_batches, quantize_model

        qat = quantize_model(student, calibration_batches(features, config.qat_calibration_windows,
                                                          config.eval_batch_size), device=acc.device)
    state = open_run_dir(work, config, resume=config.resume, overwrite=config.overwrite)

    # ---- training state
    acc.wait_for_everyone()
    if main and state is None:
        start_run_dir(work, config)
    acc.wait_for_everyone()
    objective = Objective(student, config=config if kd else None, layer_map=lmap,
                          teacher_hidden=teacher.config.hidden_size if kd else 0, task=task)
    optimizer = torch.optim.AdamW(_param_groups(objective, config.weight_decay), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(stages, steps_per_epoch, config.warmup))
    objective, optimizer = acc.prepare(objective, optimizer)
    device = acc.device
    if teacher is not None:
        teacher.to(device)
    core = acc.unwrap_model(objective)
    pos = {"epoch": 0, "step": 0, "global_step": 0}
    book = {"best": None, "evals": [], "stage_seconds": {}}
    if state is not None:
        core.load_state_dict(state["objective"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler") and getattr(acc, "scaler", None) is not None:
            acc.scaler.load_state_dict(state["scaler"])
        pos, book = state["position"], json.loads(state["book"])
        set_rng_state(state["rng"])

    def checkpoint(epoch: int, step: int) -> None:
        if main:
            scaler = getattr(acc, "scaler", None)
            save_checkpoint(work, pos["global_step"], {
                "objective": core.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler is not None else None,
                "position": {"epoch": epoch, "step": step, "global_step": pos["global_step"]},
                "book": json.dumps(book), "rng": rng_state()})
        acc.wait_for_everyone()

    def run_teacher(np_batch):
        with torch.no_grad(), acc.autocast():
            out = teacher(**{k: torch.from_numpy(v).to(device) for k, v in model_inputs(np_batch).items()})
        return tuple(o.float().cpu().numpy() for o in task_outputs(out, task))

    log = RunLog(work / "train_log.jsonl", pos["global_step"]) if main else None
    from tqdm.auto import tqdm

    bar = tqdm(total=steps_per_epoch * len(stages), initial=pos["global_step"], disable=not (config.progress and main),
               desc="distill" if kd else "finetune", dynamic_ncols=True)
    cache = None
    attention = kd and config.attention_loss != "none"
    objective.train()
    for epoch in range(pos["epoch"], len(stages)):
        stage = stages[epoch]
        if kd and stage == "prediction" and config.cache_teacher_logits and cache is None:
            t0 = time.perf_counter()
            if main:
                cache = build_logits_cache(work / "teacher_logits", run_teacher, features, batch_size=config.eval_batch_size,
                                           key=config.fingerprint(), per_token=task.per_token)
            acc.wait_for_everyone()
            if not main:
                cache = build_logits_cache(work / "teacher_logits", None, features, batch_size=0, key=config.fingerprint(),
                                           per_token=task.per_token)
            book["stage_seconds"]["teacher_logits_cache"] = book["stage_seconds"].get("teacher_logits_cache", 0.0) + (
                time.perf_counter() - t0)
        order = epoch_order(config.seed, epoch, len(features))
        for step in range(pos["step"] if epoch == pos["epoch"] else 0, steps_per_epoch):
            t0 = time.perf_counter()
            ids = order[step * config.batch_size:(step + 1) * config.batch_size]
            length = max(len(features.input_ids[i]) for i in ids)
            sums: dict[str, torch.Tensor] = {}
            for a in range(config.grad_accum):
                local = ids[(a * world + rank) * micro:(a * world + rank + 1) * micro]
                batch = {k: torch.from_numpy(v).to(device) for k, v in features.batch(local, length=length, labels=True).items()}
                targets = None
                if kd and stage == "prediction" and cache is not None:
                    targets = {"outputs": cache.batch(local, length, device)}
                elif kd:
                    with acc.autocast():
                        targets = teacher_targets(teacher, batch, stage, lmap, attention, task,
                                                  needs_hidden=bool(INTERMEDIATE & set(core.components(stage))))
                sync = acc.no_sync(objective) if a < config.grad_accum - 1 else contextlib.nullcontext()
                with sync:
                    losses = objective(batch, stage, targets)
                    acc.backward(losses["loss"] / config.grad_accum)
                for k, v in losses.items():
                    sums[k] = sums.get(k, 0.0) + v.detach().float() / config.grad_accum
            grad_norm = acc.clip_grad_norm_(objective.parameters(), config.max_grad_norm)
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            if not getattr(optimizer, "step_was_skipped", False):
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            pos["global_step"] += 1
            names = sorted(sums)
            values = acc.reduce(torch.stack([sums[n] for n in names]), reduction="mean").tolist()
            book["stage_seconds"][stage] = book["stage_seconds"].get(stage, 0.0) + time.perf_counter() - t0
            if main:
                record = {"step": pos["global_step"], "epoch": epoch, "stage": stage, **dict(zip(names, values)),
                          "grad_norm": float(grad_norm), "lr": lr}
                log.write(record)
                bar.update(1)
                bar.set_postfix({k: f"{v:.4g}" for k, v in zip(names, values)}, refresh=False)
            if pos["global_step"] % config.save_every == 0:
                checkpoint(epoch, step + 1)
            if config.stop_after and pos["global_step"] >= config.stop_after:
                bar.close()
                return {"stopped": True, "step": pos["global_step"], "work_dir": str(work)} if main else {"worker": rank}
        if dev_examples and main:
            t0 = time.perf_counter()
            result = impl.evaluate(core.student, tokenizer, dev_examples, fcfg, batch_size=config.eval_batch_size,
                                   lang=config.lang, device=device)
            entry = {"epoch": epoch + 1, "step": pos["global_step"], "stage": stage,
                     **{m: result[m] for m in task.metrics}}
            book["evals"].append(entry)
            key = task.primary_metric
            if book["best"] is None or entry[key] > book["best"][key]:
                book["best"] = entry
                with atomic_directory(work / "best", overwrite=True, kind="best-student") as tmp:
                    core.student.save_pretrained(tmp)
            book["stage_seconds"]["evaluation"] = book["stage_seconds"].get("evaluation", 0.0) + time.perf_counter() - t0
            bar.write(f"epoch {epoch + 1}/{len(stages)} ({stage}): dev " + "  ".join(f"{m} {entry[m]:.2f}" for m in task.metrics))
        checkpoint(epoch + 1, 0)
    bar.close()

    report = {
        "command": "distill" if kd else "finetune", "task": task.name, "config": config.to_dict(),
        "teacher": {"path": config.model, **describe_model(teacher)} if kd else None,
        "student": {**student_desc, **describe_model(core.student)},
        "layer_map": lmap, "head_groups": groups,
        "data": {"train_examples": len(train_examples), "train_windows": len(features), "dev_examples": len(dev_examples),
                 "steps_per_epoch": steps_per_epoch, "global_batch": config.batch_size, "processes": world},
        "precision": getattr(acc, "mixed_precision", "no"), "device": str(device),
        "stages": stages, "best": book["best"], "evals": book["evals"], "qat": qat,
        "stage_seconds": {k: round(v, 2) for k, v in book["stage_seconds"].items()},
        "total_seconds": round(sum(book["stage_seconds"].values()), 2),
    }
    if main:
        with atomic_directory(output, overwrite=config.overwrite, kind=report["command"]) as tmp:
            if book["best"] is not None:
                for f in (work / "best").iterdir():
                    if not f.name.startswith("."):
                        shutil.copy2(f, tmp / f.name)
            else:
                core.student.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            shutil.copy2(work / "train_log.jsonl", tmp / "train_log.jsonl")
            atomic_write_json(tmp / f"{report['command']}_report.json", report)
        log.fh.close()
        shutil.rmtree(work, ignore_errors=True)
    acc.wait_for_everyone()
    return report if main else {"worker": rank}
