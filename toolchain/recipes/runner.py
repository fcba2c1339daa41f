"""The recipe runner: the table of stages, which of them are done, and running the rest in order.

Each stage's work and its equivalent ``kdtool`` command live in its ``kdtool.recipes.*_stage`` module; this
module decides what runs. A stage's hash chains the recipe sections that decide its result (and the
identity of its input files and local models) with the previous stage's hash, so a changed setting
reruns its stage and every stage after it. A stage that is done (see :class:`kdtool.recipes.run_dir.RunDir`)
is skipped; a stage that runs first drops the records of every later stage.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kdtool.atomic import MARKER, atomic_write_text, claim_container
from kdtool.errors import KdtoolError
from kdtool.paths import check_outputs_apart, forget_inputs, remember_inputs
from kdtool.progress import Progress, say
from kdtool.recipes.checking import recipe_paths
from kdtool.recipes.context import (
    DEV,
    PLOT,
    PROFILE_JSON,
    PROFILE_MD,
    PRUNED,
    REPORT_JSON,
    REPORT_MD,
    STUDENT,
    TEACHER,
    TRAIN,
    VALIDATE_JSON,
    StageContext,
    bundle_rel,
    precisions,
    teacher_ref,
)
from kdtool.recipes.data_stage import data_command, data_inputs, run_data
from kdtool.recipes.export_stage import export_command, run_export
from kdtool.recipes.profile_stage import profile_command, run_profile
from kdtool.recipes.prune_stage import prune_command, run_prune
from kdtool.recipes.report import write_report
from kdtool.recipes.run_dir import RunDir, config_hash
from kdtool.recipes.sections import Recipe
from kdtool.recipes.train_stage import run_training, train_command
from kdtool.recipes.validate_stage import run_validate, validate_command


@dataclass(frozen=True)
class Stage:
    name: str
    about: str
    sections: tuple[str, ...]  # the recipe sections that decide this stage's result
    outputs: Callable[[Recipe], list[str]]  # paths relative to the run directory
    run: Callable[[StageContext], dict]
    command: Callable[[StageContext], str | None]
    always: bool = False  # cheap and derived: runs every time


STAGES: dict[str, Stage] = {s.name: s for s in [
    Stage("data", "load the SQuAD data and split it", ("data",), lambda r: [TRAIN, DEV], run_data, data_command),
    Stage("finetune", "fine-tune the teacher", ("data", "features", "finetune"), lambda r: [TEACHER],
          lambda c: run_training(c, "finetune"), lambda c: train_command(c, "finetune")),
    Stage("distill", "distil the student", ("data", "features", "distill"), lambda r: [STUDENT],
          lambda c: run_training(c, "distill"), lambda c: train_command(c, "distill")),
    Stage("prune", "prune the student to a budget", ("data", "features", "prune"), lambda r: [PRUNED], run_prune,
          prune_command),
    Stage("export", "export the student", ("features", "export"), lambda r: [bundle_rel(p) for p in precisions(r)],
          run_export, export_command),
    Stage("validate", "F1/EM and drift on dev", ("data", "features", "validate"), lambda r: [VALIDATE_JSON],
          run_validate, validate_command),
    Stage("profile", "latency and speed-ups", ("profile",), lambda r: [PROFILE_JSON, PROFILE_MD, PLOT],
          run_profile, profile_command),
    Stage("report", "report.md and report.json", (), lambda r: [REPORT_MD, REPORT_JSON], write_report,
          lambda c: None, always=True),
]}


@dataclass
class RunResult:
    run_dir: Path
    recipe: Recipe
    ran: list[str]
    skipped: list[str]
    summaries: dict
    commands: dict
    seconds: float

    @property
    def passed(self) -> bool:
        return (self.summaries.get("validate") or {}).get("passed", True) is not False


def stage_hashes(recipe: Recipe, run: RunDir) -> dict[str, str]:
    """Each stage's hash: its sections (and input files) chained with the previous stage's hash."""
    hashes, previous = {}, ""
    for name in recipe.stages:
        stage = STAGES[name]
        config = {s: recipe.section(s) for s in stage.sections}
        if name == "data":
            config = data_inputs(recipe)
        if name == "distill":
            config["teacher"] = teacher_ref(recipe)
        for section, key in (("finetune", "model"), ("distill", "teacher"), ("distill", "student"), ("prune", "teacher")):
            if section in stage.sections and recipe.section(section).get(key):
                config[f"{key}_stamp"] = _local_stamp(recipe.section(section)[key])
        previous = hashes[name] = config_hash({"stage": name, "config": config, "upstream": previous})
    return hashes


def _local_stamp(ref: str) -> list | None:
    """Names, sizes and modification times of a local model directory or file: a changed model reruns its stage."""
    p = Path(ref)
    if not p.exists():
        return None  # a preset, package: or hub reference: identified by its name
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    return [(str(f.relative_to(p)) if f != p else p.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]


WORK_DIRS = {"finetune": TEACHER, "distill": STUDENT, "prune": PRUNED}  # stages that keep a <output>.work run directory


def check_stage_paths(recipe: Recipe, run: RunDir) -> list[str]:
    """Refuse, before anything is written, a stage output that is, holds or lies in an input the recipe names
    (``data.train`` inside ``RUN/data/`` would be replaced by the split): every stage of a run is guarded
    against every other stage's inputs, as the single commands are. Returns the inputs' keys for
    :func:`kdtool.paths.forget_inputs`."""
    outputs = [("the run's", run.path(rel)) for rel in ("recipe.yaml", "stages", MARKER)]
    for name in recipe.stages:
        rels = STAGES[name].outputs(recipe) + ([WORK_DIRS[name] + ".work"] if name in WORK_DIRS else [])
        outputs += [(f"stage {name}'s output", run.path(rel)) for rel in rels]
    inputs = [(f"recipe key {key}", path) for key, path in recipe_paths(recipe.sections)]
    if Path(recipe.source).is_file():
        inputs.append(("RECIPE", recipe.source))
    check_outputs_apart(inputs, outputs)
    return remember_inputs(inputs)  # cleanup during the run never removes them (kdtool.atomic)


def plan(recipe: Recipe, run_dir: Path) -> list[tuple[str, bool]]:
    """(stage, done) for every stage of ``recipe`` in ``run_dir``."""
    run = RunDir(run_dir)
    hashes = stage_hashes(recipe, run)
    done, out = True, []
    for name in recipe.stages:
        done = done and not STAGES[name].always and run.is_done(name, hashes[name])
        out.append((name, done))
    return out


def run_recipe(recipe: Recipe, run_dir: Path, *, progress: Progress | None = None, force: tuple[str, ...] = (),
               check: Callable[[str, dict], None] | None = None) -> RunResult:
    """Run the stages of ``recipe`` in ``run_dir`` that are not done yet; see the module docstring.

    ``progress`` gets a line per stage (and the stage's own lines, indented) and the counts of the
    library calls (training steps, scored windows, profiling runs).

    ``check(stage, summary)`` runs after every stage (also a skipped one) and may raise a
    :class:`KdtoolError` to stop the run (the demo's "fails loudly" thresholds). ``force`` names
    stages to run even when done (and with them every later stage).
    """
    t_start = time.perf_counter()
    run = RunDir(run_dir)
    remembered = check_stage_paths(recipe, run)
    try:
        claim_container(run.root, "run", "run directory")  # a demo directory is a run directory too
        atomic_write_text(run.path("recipe.yaml"), f"# {recipe.name}: resolved from {recipe.source}\n" + recipe.to_yaml())
        result = _run_stages(recipe, run, progress, force, check)
    finally:
        forget_inputs(remembered)
    result.seconds = time.perf_counter() - t_start
    return result


def _run_stages(recipe: Recipe, run: RunDir, progress, force: tuple[str, ...], check) -> RunResult:
    ctx = StageContext(recipe, run, progress)
    hashes = stage_hashes(recipe, run)
    order = recipe.stages
    result = RunResult(run.root, recipe, [], [], ctx.summaries, ctx.commands, 0.0)
    rerun = False  # once a stage runs, every later stage runs too
    for i, name in enumerate(order, 1):
        stage = STAGES[name]
        try:
            result.commands[name] = stage.command(ctx)
        except KdtoolError:
            result.commands[name] = None
        head = f"[{i}/{len(order)}] {name}: {stage.about}"
        if not (rerun or stage.always or name in force) and run.is_done(name, hashes[name]):
            record = run.record(name)
            ctx.summaries[name] = record.get("summary", {})
            result.skipped.append(name)
            say(progress, f"{head}: done earlier ({record.get('seconds', 0):.0f} s), skipped")
        else:
            say(progress, head)
            if not stage.always:
                rerun = True
                run.forget(order[i - 1:])
            t0 = time.perf_counter()
            ctx.summaries[name] = stage.run(ctx)
            seconds = time.perf_counter() - t0
            ctx.summaries[name]["stage_seconds"] = round(seconds, 2)
            run.write_record(name, hashes[name], stage.outputs(recipe), ctx.summaries[name], seconds,
                             result.commands[name])
            result.ran.append(name)
            say(progress, f"    done in {seconds:.1f} s")
        if check is not None:
            check(name, ctx.summaries[name])
    return result
