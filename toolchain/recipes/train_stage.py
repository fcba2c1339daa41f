"""The ``finetune`` and ``distill`` stages: :func:`kdtool.distill.finetune` -> ``teacher/`` (optional stage),
:func:`kdtool.distill.distill` of the teacher -> ``student/``.

A training stage killed half-way resumes from its last checkpoint when its configuration is unchanged.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from kdtool import stamps
from kdtool.distill import distill, finetune
from kdtool.distill.config import RESUMABLE_FIELDS, DistillConfig, TrainConfig
from kdtool.errors import KdtoolError
from kdtool.recipes.commands import command_line, training_spec
from kdtool.recipes.context import DEV, STUDENT, TEACHER, TRAIN, StageContext, features, lang, resolve_model, teacher_dir


def _model_ref(ctx: StageContext, stage: str, resolve: bool) -> str:
    """What is trained (finetune) or the teacher (distill); hub ids stay unresolved in a printed command."""
    section = ctx.recipe.section(stage)
    if stage == "finetune":
        ref = section["model"]
    elif ctx.recipe.has("finetune"):
        return str(ctx.run.path(TEACHER))
    else:
        ref = section["teacher"]
        if resolve:
            return teacher_dir(ctx)
    return resolve_model(ref, f"{stage}.model") if resolve or ref.startswith("package:") else ref


def _train_config(ctx: StageContext, stage: str, *, resolve: bool = True):
    recipe = ctx.recipe
    section = recipe.section(stage)
    feats = features(recipe)
    common = dict(train_file=str(ctx.run.path(TRAIN)), dev_file=str(ctx.run.path(DEV)),
                  output=str(ctx.run.path(TEACHER if stage == "finetune" else STUDENT)),
                  lang=lang(recipe), max_length=feats.max_length,
                  doc_stride=feats.doc_stride, max_query_length=feats.max_query_length)
    section.pop("model", None)
    section.pop("teacher", None)
    model = _model_ref(ctx, stage, resolve)
    if stage == "finetune":
        return TrainConfig(model=model, **section, **common)
    if section.get("student") and section["student"].startswith("package:"):
        section["student"] = resolve_model(section["student"], "distill.student")
    return DistillConfig(model=model, **section, **common)


def run_training(ctx: StageContext, stage: str) -> dict:
    config = _train_config(ctx, stage)
    work = Path(config.output).with_name(Path(config.output).name + ".work")
    recorded = stamps.read_json(work / "run.json")
    resume = isinstance(recorded, dict) and recorded.get("fingerprint") == config.fingerprint()
    if resume:
        ctx.say(f"    resuming the interrupted run in {work}")
    config = replace(config, resume=resume, overwrite=True, work_dir=str(work))
    report = (finetune if stage == "finetune" else distill)(config, progress=ctx.nested())
    if report.get("stopped"):
        raise KdtoolError(f"{stage} stopped at step {report['step']} before the end; rerun to resume it")
    best = report.get("best") or {}
    return {"dev_f1": best.get("f1"), "dev_exact_match": best.get("exact_match"), "best_epoch": best.get("epoch"),
            "parameters": report["student"]["parameters"], "layers": report["student"]["layers"],
            "teacher_parameters": (report.get("teacher") or {}).get("parameters"),
            "seconds": report.get("total_seconds"), "evals": report.get("evals")}


def train_command(ctx: StageContext, stage: str) -> str:
    config = _train_config(ctx, stage, resolve=False)
    required = {"model": config.model, "train_file": config.train_file, "output": config.output}
    if stage == "distill":
        required["strategy"] = config.strategy  # the preset's values are what the command gives by default
    baseline = type(config)(**required)
    return command_line(training_spec(stage, type(config)), config, baseline=baseline,
                        omit=RESUMABLE_FIELDS - {"output"}, extra=[("--overwrite", True)])
