"""The recipe's ``prune:`` stage: :func:`kdtool.prune.prune` on the distilled student -> ``student-pruned/``.

The section takes :class:`~kdtool.prune.config.PruneConfig` fields. The teacher defaults to the
recipe's teacher (not the unpruned student), the windows and language come from ``features:`` and
``data:``, and ``recovery:`` holds ``kdtool distill`` options for the recovery. When the recipe has
a prune stage, export bundles the pruned student and validate/profile list it beside the dense one.
A prune stage killed during recovery resumes from its run directory when its configuration is unchanged.
"""

from __future__ import annotations

from dataclasses import replace

from kdtool import stamps
from kdtool.errors import KdtoolError
from kdtool.prune import prune
from kdtool.prune.config import RESUMABLE, PruneConfig
from kdtool.recipes.commands import PRUNE, command_line
from kdtool.recipes.context import DEV, PRUNED, STUDENT, TRAIN, StageContext, features, lang, resolve_model, teacher_dir


def _prune_config(ctx: StageContext):
    section = ctx.recipe.section("prune")
    feats = features(ctx.recipe)
    recovery = {"lang": lang(ctx.recipe), "max_length": feats.max_length,
                "doc_stride": feats.doc_stride, "max_query_length": feats.max_query_length,
                **(section.pop("recovery", None) or {})}
    teacher = section.pop("teacher", None)
    return PruneConfig(model=str(ctx.run.path(STUDENT)), output=str(ctx.run.path(PRUNED)),
                       train_file=str(ctx.run.path(TRAIN)), dev_file=str(ctx.run.path(DEV)),
                       teacher=resolve_model(teacher, "prune.teacher") if teacher else teacher_dir(ctx),
                       recovery=recovery, **section)


def run_prune(ctx: StageContext) -> dict:
    config = _prune_config(ctx)
    work = ctx.run.path(PRUNED + ".work")
    recorded = stamps.read_json(work / "run.json")
    resume = isinstance(recorded, dict) and recorded.get("fingerprint") == config.fingerprint()
    if resume:
        ctx.say(f"    resuming the interrupted run in {work}")
    report = prune(replace(config, resume=resume, overwrite=True), progress=ctx.nested())
    if report.get("stopped"):
        raise KdtoolError(f"prune stopped in step {report['prune_step']} before the end; rerun to resume it")
    last = (report["steps"][-1].get("recovery") or {}).get("best") or {}
    return {"parameters": report["after"]["parameters"], "parameters_kept": report["parameters_kept"],
            "flops_kept": report["flops_kept"], "dev_f1": last.get("f1"), "dev_exact_match": last.get("exact_match"),
            "latency": report["latency"], "budget": report["budget"]}


def prune_command(ctx: StageContext) -> str:
    return command_line(PRUNE, _prune_config(ctx), omit=RESUMABLE - {"overwrite"}, extra=[("--overwrite", True)])
