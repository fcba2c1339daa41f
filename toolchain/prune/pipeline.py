"""``prune``: score, search, slice and recover, step by step, resumable; writes the pruned model and its report.

Reading order: :func:`prune` checks every input (budget, structures, files, the recovery options,
whether the budget is reachable at all) before anything is written; then each step of the schedule
scores the current model (:mod:`~kdtool.prune.importance`), walks the pruning path to the step's
target (:mod:`~kdtool.prune.search`), slices (:mod:`~kdtool.prune.slicing`) and recovers with the
existing trainer (:func:`kdtool.distill.distill`, the pruned model as the student).

Run directory (``OUTPUT.work``): ``run.json`` (the config's fingerprint), ``step-K/pruned`` (the sliced
model and ``step.json``), ``step-K/recovered`` (the trainer's output) and ``step-K/recovered.work``
(the trainer's own run directory). Each is written atomically, so ``--resume`` reuses finished steps
and continues an interrupted recovery from the trainer's newest checkpoint.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

from kdtool import stamps
from kdtool.atomic import atomic_directory, atomic_write_json, check_output_dir
from kdtool.data import MAX_LENGTH, fit_window
from kdtool.distill import DistillConfig, distill
from kdtool.distill.config import schedule_for
from kdtool.errors import InputError, KdtoolError, require_dir, require_file
from kdtool.models import load_task_model, load_tokenizer, max_positions
from kdtool.paths import guard_outputs
from kdtool.profiles import get_profile
from kdtool.progress import Progress
from kdtool.prune.config import PruneConfig
from kdtool.prune.importance import score_units
from kdtool.prune.latency import measure_dir, measure_plan
from kdtool.prune.search import Point, bisect_latency, choose_within, pruning_path
from kdtool.prune.shapes import Shape, base_params, encoder_layers
from kdtool.prune.slicing import Plan, apply_plan
from kdtool.prune.units import UNITS
from kdtool.tasks import resolve_task

SCORING = ("first-order Taylor |dL/d gate| summed over batches at gates = 1 (Michel et al. 2019 for heads; "
           "Molchanov et al. 2019 / Model Optimizer gradnas for FFN neurons and layers); L = hard loss + "
           "KL(teacher || model) x T^2")
# two-stage (TinyBERT: intermediate epochs, then prediction epochs): joint recovery (every loss summed) left a
# model pruned to 30% of its FLOPs at 13.0 dev F1 where two-stage reached 31.7 (bench/frontier.py, README).
# A single epoch has no room for two stages: then joint. No attention loss: per-layer head counts differ from
# the teacher's.
RECOVERY_DEFAULTS = {"schedule": "two-stage", "attention_loss": "none"}


def _recovery_options(recovery: dict) -> dict:
    """prune's recovery defaults under the options given (None: not given); a two-stage default on one epoch runs
    joint, the rule of kdtool distill (:func:`kdtool.distill.config.schedule_for`)."""
    given = {k: v for k, v in recovery.items() if v is not None}
    options = {**RECOVERY_DEFAULTS, **given}
    if "schedule" not in given:
        options["schedule"] = schedule_for(options["schedule"], options.get("epochs", DistillConfig.epochs),
                                           options.get("intermediate_epochs"))
    return options


def _load(path, task):
    return load_task_model(path, task, attn_implementation="sdpa").eval()


def _recovery_config(ctx: _Context, student: str, output: Path, resume: bool) -> DistillConfig:
    return DistillConfig(model=ctx.teacher, student=student, student_init="random", task=ctx.task.name,
                         train_file=ctx.config.train_file, dev_file=ctx.config.dev_file, output=str(output),
                         work_dir=str(output.with_name(output.name + ".work")), resume=resume,
                         stop_after=ctx.config.stop_after, **ctx.recovery)


def _importance_batches(ctx: _Context, tokenizer) -> list[dict]:
    impl = ctx.task.module()
    examples = impl.load_examples(ctx.config.train_file, ctx.config.importance_examples)
    feats = impl.make_features(examples, tokenizer, ctx.features, with_labels=True)
    b = ctx.config.importance_batch_size
    out = []
    for start in range(0, len(feats), b):
        idx = list(range(start, min(start + b, len(feats))))
        length = max(len(feats.input_ids[i]) for i in idx)
        out.append({k: torch.from_numpy(v) for k, v in feats.batch(idx, length=length, labels=True).items()})
    return out


def _evaluate(model, tokenizer, ctx: _Context) -> dict | None:
    if not ctx.config.dev_file:
        return None
    impl, rec = ctx.task.module(), ctx.settings
    examples = impl.load_examples(ctx.config.dev_file, rec.max_dev_examples)
    result = impl.evaluate(model, tokenizer, examples, ctx.features, batch_size=rec.eval_batch_size, lang=rec.lang,
                           device="cpu")
    return {m: round(result[m], 3) for m in ctx.task.metrics}


class _Context:
    """What every step needs: the checked inputs and the measurements of the original model."""

    def __init__(self, config: PruneConfig):
        self.config = config
        self.budget = config.budget
        require_dir(config.model, "model directory")
        require_file(config.train_file, "training file")
        if config.dev_file:
            require_file(config.dev_file, "dev file")
        self.teacher = config.teacher or config.model
        require_dir(self.teacher, "teacher directory")
        self.task = resolve_task(config.task, config.model)
        self.output = Path(config.output).absolute()
        self.work = self.output.with_name(self.output.name + ".work")
        check_output_dir(self.output, config.overwrite, kind="prune")
        guard_outputs({"MODEL_DIR": config.model, "--train": config.train_file, "--dev": config.dev_file,
                       "--teacher": config.teacher}, {"--output": self.output, "work directory": self.work})
        profile = None
        if config.profile:
            profile = get_profile(config.profile)
        self.seq_len = config.seq_len or (max(profile.seq_lengths) if profile else MAX_LENGTH)
        self.tokenizer = load_tokenizer(config.model)
        self.model = _load(config.model, self.task)
        encoder_layers(self.model)  # a one-line error for models that are not BERT-style
        for name in config.structures:
            reason = UNITS[name].refusal(self.model)
            if reason:
                raise InputError(f"{config.model}: {reason}; drop '{name}' from --prune")
        self.recovery = _recovery_options(config.recovery)
        # the recovery's settings, checked now; its windows (fitted to the model) also score and evaluate
        self.settings = _recovery_config(self, config.model, self.work / "check", False)
        length = fit_window(self.settings.max_length, max_positions(self.model.config), model=config.model)
        self.features = self.task.module().feature_config(length, self.settings.doc_stride,
                                                          self.settings.max_query_length)
        self.recovery["max_length"] = length  # fitted once, said once
        self.base = base_params(self.model)
        self.shape = Shape.of(self.model)
        self.original = self.shape.describe(self.seq_len, self.base)
        self.measure_kw = {"profile": config.profile, "seq_len": self.seq_len, "engine": config.latency_engine,
                           "runs": config.latency_runs}
        self.original_ms = None
        if self.budget.kind == "latency":
            self.original_ms = measure_plan(self.model, self.tokenizer, Plan(), **self.measure_kw)
        self._check_reachable()

    def _check_reachable(self) -> None:
        zeros = {name: unit.no_scores(self.shape) for name, unit in UNITS.items()}
        cost = "params" if self.budget.kind == "params" else "flops"
        path = pruning_path(self.shape, zeros, self.config.structures, seq_len=self.seq_len, base_params=self.base,
                            cost=cost, ffn_step=self.config.ffn_step)
        smallest = path[-1]
        what = (f"{smallest.shape.layers} layers, {sum(smallest.shape.heads)} heads, FFN {smallest.shape.ffn}: "
                f"{smallest.params / 1e6:.2f}M parameters, {100 * smallest.flops / self.original['flops']:.1f}% FLOPs")
        if self.budget.kind == "latency":
            ms = measure_plan(self.model, self.tokenizer, smallest.plan, **self.measure_kw)
            if ms > self.budget.value:
                raise InputError(f"--target-latency {self.budget.value:g} ms cannot be met: the smallest shape "
                                 f"--prune {','.join(self.config.structures)} reaches ({what}) measures {ms:.2f} ms")
            return
        full = self.original["parameters" if cost == "params" else "flops"]
        limit = self.budget.limit(full)
        if limit >= full:
            raise InputError(f"--target-{self.budget.kind} {self.budget.text} is not below the model's "
                             f"{full:,} {cost}; nothing to prune")
        if getattr(smallest, cost) > limit:
            raise InputError(f"--target-{self.budget.kind} {self.budget.describe()} cannot be met: the smallest "
                             f"shape --prune {','.join(self.config.structures)} reaches is {what}")

    def step_limit(self, k: int) -> float:
        """The cost limit of step ``k`` of K: geometric steps from the full model to the budget."""
        steps = self.config.steps
        if self.budget.kind == "latency":
            return self.original_ms * (self.budget.value / self.original_ms) ** (k / steps)
        full = self.original["parameters" if self.budget.kind == "params" else "flops"]
        return full * (self.budget.limit(full) / full) ** (k / steps)


def _open_work(ctx: _Context) -> None:
    run_file = ctx.work / "run.json"
    fp = ctx.config.fingerprint()
    if ctx.work.exists():
        recorded = stamps.read_json(run_file) if stamps.container_kind(ctx.work) == "work" else None
        if not isinstance(recorded, dict):
            raise InputError(f"{ctx.work} exists but is not a kdtool prune run directory; remove it")
        if not ctx.config.resume:
            if not ctx.config.overwrite:
                raise InputError(f"run directory {ctx.work} exists from an earlier run; pass --resume to continue it "
                                 "or --overwrite to start over")
            shutil.rmtree(ctx.work)
        elif recorded.get("fingerprint") != fp:
            raise InputError(f"cannot resume {ctx.work}: it was started with a different configuration")
        else:
            return
    elif ctx.config.resume:
        raise InputError(f"nothing to resume: run directory {ctx.work} does not exist")
    ctx.work.mkdir(parents=True)
    stamps.stamp_container(ctx.work, "work")
    atomic_write_json(run_file, {"fingerprint": fp, "config": ctx.config.to_dict()})


def _choose(ctx: _Context, model, tokenizer, scores: dict, limit: float) -> tuple[Point, list[dict]]:
    shape = Shape.of(model)
    cost = "params" if ctx.budget.kind == "params" else "flops"
    if ctx.budget.kind != "latency":
        point = choose_within(shape, scores, ctx.config.structures, limit, seq_len=ctx.seq_len, base_params=ctx.base,
                              cost=cost, ffn_step=ctx.config.ffn_step)
        if point is None:  # checked reachable at the start; a step's limit is never below the final one
            raise KdtoolError(f"no shape within {limit:,.0f} {cost}; this is a bug, rerun with --debug and report it")
        return point, []
    path = pruning_path(shape, scores, ctx.config.structures, seq_len=ctx.seq_len, base_params=ctx.base, cost=cost,
                        ffn_step=ctx.config.ffn_step)
    point, log = bisect_latency(path, limit, lambda p: measure_plan(model, tokenizer, p.plan, **ctx.measure_kw))
    if point is None:  # it fitted when checked at the start: the machine is slower now (load, thermals)
        raise KdtoolError(f"the smallest shape now measures {log[-1]['latency_ms']:.2f} ms, "
                          f"over the step's {limit:.2f} ms; run the search on an idle machine and continue with --resume")
    return point, log


def _prune_step(ctx: _Context, k: int, source: str, target: Path) -> dict:
    t0 = time.perf_counter()
    model, tokenizer = _load(source, ctx.task), load_tokenizer(source)
    teacher = None if ctx.teacher == source else _load(ctx.teacher, ctx.task)
    scores = score_units(model, _importance_batches(ctx, tokenizer), ctx.task, teacher=teacher,
                         temperature=ctx.settings.temperature)
    limit = ctx.step_limit(k)
    point, measurements = _choose(ctx, model, tokenizer, scores, limit)
    before = Shape.of(model).describe(ctx.seq_len, ctx.base)
    apply_plan(model, point.plan)
    info = {"step": k, "source": source, "limit": limit, "limit_kind": ctx.budget.kind, "removed": point.plan.to_dict(),
            "before": before, "after": Shape.of(model).describe(ctx.seq_len, ctx.base),
            "estimated_loss_increase": point.lost_importance, "latency_search": measurements, "scores": scores,
            "dev_after_pruning": _evaluate(model, tokenizer, ctx), "seconds": 0.0}
    info["seconds"] = round(time.perf_counter() - t0, 2)
    with atomic_directory(target, overwrite=True, kind="pruned-step") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / "step.json", info)
    return info


def prune(config: PruneConfig, *, progress: Progress | None = None) -> dict:
    """Run ``config``; returns the report (``{"stopped": True, ...}`` when a recovery was stopped early).
    ``progress`` receives each recovery's training progress (kdtool.progress)."""

    ctx = _Context(config)
    _open_work(ctx)
    source, steps = str(Path(config.model).absolute()), []
    for k in range(1, config.steps + 1):
        step_dir = ctx.work / f"step-{k}"
        pruned, recovered = step_dir / "pruned", step_dir / "recovered"
        if not (pruned / "step.json").is_file():
            _prune_step(ctx, k, source, pruned)
        info = json.loads((pruned / "step.json").read_text(encoding="utf-8"))
        source = str(pruned)
        if config.recover:
            if not recovered.is_dir():
                work = recovered.with_name(recovered.name + ".work")
                rcfg = _recovery_config(ctx, str(pruned), recovered, resume=(work / "run.json").is_file())
                report = distill(rcfg, progress=progress)
                if report.get("stopped"):
                    return {**report, "prune_step": k}
            rep = json.loads((recovered / "distill_report.json").read_text(encoding="utf-8"))
            info["recovery"] = {"best": rep.get("best"), "evals": rep.get("evals"), "seconds": rep.get("total_seconds"),
                                "steps_per_epoch": rep["data"]["steps_per_epoch"], "epochs": len(rep.get("stages", [])),
                                "stages": rep.get("stages")}
            source = str(recovered)
        steps.append(info)
    return _finish(ctx, source, steps)


def _finish(ctx: _Context, final: str, steps: list[dict]) -> dict:
    config = ctx.config
    model = _load(final, ctx.task)
    after = Shape.of(model).describe(ctx.seq_len, ctx.base)
    latency = None
    if config.profile:
        ms_after = measure_dir(Path(final), **ctx.measure_kw)
        ms_before = ctx.original_ms if ctx.original_ms is not None else measure_plan(
            ctx.model, ctx.tokenizer, Plan(), **ctx.measure_kw)
        latency = {"engine": config.latency_engine, "profile": config.profile, "seq_len": ctx.seq_len, "batch_size": 1,
                   "p50_ms_before": round(ms_before, 3), "p50_ms_after": round(ms_after, 3),
                   "speedup": round(ms_before / ms_after, 3)}
    report = {
        "command": "prune", "task": ctx.task.name, "config": config.to_dict(), "budget": ctx.budget.describe(),
        "scoring": SCORING, "seq_len": ctx.seq_len, "teacher": ctx.teacher,
        "shape_rules": "heads: per-layer counts (config.pruned_heads); FFN: one width for all layers; layers: dropped",
        "before": ctx.original, "after": after,
        "parameters_kept": round(after["parameters"] / ctx.original["parameters"], 4),
        "flops_kept": round(after["flops"] / ctx.original["flops"], 4),
        "latency": latency, "dev_before": _evaluate(ctx.model, ctx.tokenizer, ctx), "steps": steps,
    }
    with atomic_directory(ctx.output, overwrite=config.overwrite, kind="prune") as tmp:
        for f in Path(final).iterdir():
            if f.is_file() and not f.name.startswith("."):
                shutil.copy2(f, tmp / f.name)
        atomic_write_json(tmp / "prune_report.json", report)
    shutil.rmtree(ctx.work, ignore_errors=True)
    return report

