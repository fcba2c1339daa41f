"""The recipe's ``prune:`` stage: :func:`kdtool.prune.prune` on the distilled student -> ``student-pruned/``.

The section takes :class:`~kdtool.prune.config.PruneConfig` fields. The teacher defaults to the
recipe's teacher (not the unpruned student), the windows and language come from ``features:`` and
``data:``, and ``recovery:`` holds ``kdtool distill`` options for the recovery. When the recipe has
a prune stage, export bundles the pruned student and validate/profile list it beside the dense one.
A prune stage killed during recovery resumes from its run directory when its configuration is unchanged.
"""

from __future__ import annotations

import json
from dataclasses import replace

from kdtool.errors import KdtoolError
from kdtool.recipe_stages import DEV, PRUNED, STUDENT, TRAIN, StageContext, _features, _line, resolve_model, teacher_dir


def _prune_config(ctx: StageContext):
    from kdtool.prune.config import PruneConfig

    section = ctx.recipe.section("prune")
    feats = _features(ctx.recipe)
    recovery = {"lang": ctx.recipe.section("data").get("lang", "es"), "max_length": feats.max_length,
                "doc_stride": feats.doc_stride, "max_query_length": feats.max_query_length,
                **(section.pop("recovery", None) or {})}
    teacher = section.pop("teacher", None)
    return PruneConfig(model=str(ctx.run.path(STUDENT)), output=str(ctx.run.path(PRUNED)),
                       train_file=str(ctx.run.path(TRAIN)), dev_file=str(ctx.run.path(DEV)),
                       teacher=resolve_model(teacher, "prune.teacher") if teacher else teacher_dir(ctx),
                       recovery=recovery, **section)


def run_prune(ctx: StageContext) -> dict:
    from kdtool.prune import prune

    config = _prune_config(ctx)
    work = ctx.run.path(PRUNED + ".work")
    resume = False
    if (work / "run.json").is_file():
        resume = json.loads((work / "run.json").read_text(encoding="utf-8")).get("fingerprint") == config.fingerprint()
    if resume:
        ctx.say(f"    resuming the interrupted run in {work}")
    report = prune(replace(config, resume=resume, overwrite=True))
    if report.get("stopped"):
        raise KdtoolError(f"prune stopped in step {report['prune_step']} before the end; rerun to resume it")
    last = (report["steps"][-1].get("recovery") or {}).get("best") or {}
    return {"parameters": report["after"]["parameters"], "parameters_kept": report["parameters_kept"],
            "flops_kept": report["flops_kept"], "dev_f1": last.get("f1"), "dev_exact_match": last.get("exact_match"),
            "latency": report["latency"], "budget": report["budget"]}


def prune_command(ctx: StageContext) -> str:
    c = _prune_config(ctx)
    rec = c.recovery
    options = [("-o", c.output), ("--train", c.train_file), ("--dev", c.dev_file), ("--teacher", c.teacher),
               ("--target-params", c.target_params), ("--target-flops", c.target_flops),
               ("--target-latency", c.target_latency_ms), ("--profile", c.profile), ("--seq-len", c.seq_len),
               ("--prune", ",".join(c.structures)), ("--schedule", c.schedule), ("--steps", c.steps if c.steps > 1 else None),
               ("--lang", rec.get("lang")), ("--max-length", rec.get("max_length")), ("--doc-stride", rec.get("doc_stride")),
               ("--max-query-length", rec.get("max_query_length"))]
    for key, value in rec.items():
        if key not in ("lang", "max_length", "doc_stride", "max_query_length") and value is not None:
            flag = "--recovery-schedule" if key == "schedule" else f"--{key.replace('_', '-')}"
            options.append((flag, value))
    return _line("prune", [c.model], options + [("--no-recover", not c.recover), ("--overwrite", True)])
