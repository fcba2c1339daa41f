"""Running a recipe: each stage builds its library config from the recipe and calls the library.

    data      load (and split by article) the SQuAD files   -> data/train.json, data/dev.json
    finetune  kdtool.distill.finetune (optional)             -> teacher/
    distill   kdtool.distill.distill                         -> student/
    export    kdtool.export.pipeline.export_model per precision -> bundle-<precision>/
    validate  kdtool.validate.validate                        -> validate.json
    profile   kdtool.profiles.profiler.profile_models         -> profile.json, profile.md, latency.png
    report    kdtool.demo.report                              -> report.md, report.json

:mod:`kdtool.recipe_runner` decides which stages run. A training stage killed half-way resumes
from its last checkpoint when its configuration is unchanged. Every stage also says which
``kdtool`` command does the same by hand.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kdtool.bundle.manifest import sha256_file
from kdtool.errors import InputError, KdtoolError
from kdtool.recipes import Recipe
from kdtool.run_dir import RunDir

TRAIN, DEV = "data/train.json", "data/dev.json"
TEACHER, STUDENT, PRUNED = "teacher", "student", "student-pruned"
VALIDATE_JSON = "validate.json"
PROFILE_JSON, PROFILE_MD, PLOT = "profile.json", "profile.md", "latency.png"
REPORT_MD, REPORT_JSON = "report.md", "report.json"
DEFAULT_PRECISIONS = ("int8",)


@dataclass
class StageContext:
    recipe: Recipe
    run: RunDir
    say: Callable[[str], None] = print
    progress: bool = True  # progress bars of the library functions
    summaries: dict = field(default_factory=dict)  # stage -> summary of the stages done so far
    commands: dict = field(default_factory=dict)  # stage -> the kdtool command line(s) that redo it by hand


# ---------------------------------------------------------------------------------------------
# where things are


def resolve_model(ref: str, what: str) -> str:
    """A local directory for a model reference: a path, ``package:NAME/sub/dir``, or a hub id."""
    import importlib.util

    if ref.startswith("package:"):
        name, _, sub = ref[len("package:"):].partition("/")
        spec = importlib.util.find_spec(name) if name else None
        if spec is None or not spec.submodule_search_locations:
            raise InputError(f"{what} {ref}: Python package {name!r} is not installed "
                             f"(pip install {name.replace('_', '-')})")
        path = Path(list(spec.submodule_search_locations)[0]) / sub
        if not path.is_dir():
            raise InputError(f"{what} {ref}: {path} is not a directory inside the package")
        return str(path)
    if Path(ref).exists():
        return ref
    from kdtool.recipes import HUB_ID

    if not HUB_ID.match(ref):
        raise InputError(f"{what} not found: {ref} (give a model directory, package:NAME/dir or a hub id)")
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(ref)
    except Exception as err:  # offline, unknown id, no permission: one line either way
        raise InputError(f"{what} {ref}: not a local directory, and the hub download failed "
                         f"({type(err).__name__}); download it elsewhere and pass the directory with "
                         "--override") from None


def teacher_ref(recipe: Recipe) -> str:
    """What the teacher is before resolution (the finetune output, or the recipe's distill.teacher)."""
    return TEACHER if recipe.has("finetune") else recipe.section("distill")["teacher"]


def teacher_dir(ctx: StageContext) -> str:
    if ctx.recipe.has("finetune"):
        return str(ctx.run.path(TEACHER))
    return resolve_model(ctx.recipe.section("distill")["teacher"], "teacher")


def precisions(recipe: Recipe) -> list[str]:
    return list(recipe.section("export").get("precisions") or DEFAULT_PRECISIONS)


def bundle_rel(precision: str) -> str:
    return f"bundle-{precision}"


def engines(ctx: StageContext) -> dict[str, str]:
    """Name -> path of every model the run produced (teacher, student, bundles)."""
    out = {"teacher": teacher_dir(ctx), "student": str(ctx.run.path(STUDENT))}
    if ctx.recipe.has("prune"):
        out["pruned"] = str(ctx.run.path(PRUNED))
    if ctx.recipe.has("export"):
        for p in precisions(ctx.recipe):
            out[f"bundle-{p}"] = str(ctx.run.path(bundle_rel(p)))
    return out


def _features(recipe: Recipe):
    from kdtool.data import FeatureConfig

    return FeatureConfig(**recipe.section("features"))


def _line(command: str, args: list[str], options: list[tuple[str, object]]) -> str:
    parts = ["kdtool", command, *map(shlex.quote, map(str, args))]
    for opt, value in options:
        if value is None or value is False:
            continue
        parts.append(opt)
        if value is not True:
            parts.append(shlex.quote(",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)))
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------
# data


def data_inputs(recipe: Recipe) -> dict:
    data = recipe.section("data")
    digests = {}
    for key in ("train", "dev"):
        if data.get(key):
            p = Path(data[key])
            digests[key] = sha256_file(p) if p.is_file() else None  # the data stage says it is missing
    return {"data": data, "sha256": digests}


def run_data(ctx: StageContext) -> dict:
    from kdtool.atomic import atomic_write_json
    from kdtool.data import load_squad, split_by_article, to_squad_json

    data = ctx.recipe.section("data")
    for key in ("train", "dev"):
        if data.get(key) and not Path(data[key]).is_file():
            raise InputError(f"data.{key}: SQuAD file not found: {data[key]}; set it in the recipe or pass "
                             f"--override data.{key}=PATH")
    pool = load_squad(data["train"])
    ctx.say(f"    {pool.report.summary()}")
    if data.get("dev"):
        train, dev = pool, load_squad(data["dev"])
        ctx.say(f"    {dev.report.summary()}")
        how = "given files"
    else:
        fraction, seed = data.get("dev_fraction", 0.2), data.get("split_seed", 0)
        train, dev = split_by_article(pool, fraction, seed)
        how = f"split by article: dev fraction {fraction}, seed {seed}"
    atomic_write_json(ctx.run.path(TRAIN), to_squad_json(train))
    atomic_write_json(ctx.run.path(DEV), to_squad_json(dev))
    ctx.say(f"    train {len(train)} questions ({len(train.articles)} articles), "
            f"dev {len(dev)} questions ({len(dev.articles)} articles); {how}")
    return {"split": how, "train_questions": len(train), "dev_questions": len(dev),
            "train_articles": len(train.articles), "dev_articles": len(dev.articles),
            "load_report": pool.report.to_dict()}


def data_command(ctx: StageContext) -> str | None:
    data = ctx.recipe.section("data")
    if data.get("dev"):
        return None
    return _line("split", [data["train"]], [("--train", ctx.run.path(TRAIN)), ("--dev", ctx.run.path(DEV)),
                                            ("--dev-fraction", data.get("dev_fraction", 0.2)),
                                            ("--seed", data.get("split_seed", 0))])


# ---------------------------------------------------------------------------------------------
# finetune and distill


def _train_config(ctx: StageContext, stage: str):
    from kdtool.distill.config import DistillConfig, TrainConfig

    recipe = ctx.recipe
    section = recipe.section(stage)
    feats = _features(recipe)
    common = dict(train_file=str(ctx.run.path(TRAIN)), dev_file=str(ctx.run.path(DEV)),
                  output=str(ctx.run.path(TEACHER if stage == "finetune" else STUDENT)),
                  lang=recipe.section("data").get("lang", "es"), max_length=feats.max_length,
                  doc_stride=feats.doc_stride, max_query_length=feats.max_query_length)
    if stage == "finetune":
        section["model"] = resolve_model(section["model"], "finetune.model")
        return TrainConfig(**section, **common)
    section.pop("teacher", None)
    if section.get("student") and section["student"].startswith("package:"):
        section["student"] = resolve_model(section["student"], "distill.student")
    return DistillConfig(model=teacher_dir(ctx), **section, **common)


def run_training(ctx: StageContext, stage: str) -> dict:
    import json

    from kdtool.distill import distill, finetune

    config = _train_config(ctx, stage)
    work = Path(config.output).with_name(Path(config.output).name + ".work")
    resume = False
    run_file = work / "run.json"
    if run_file.is_file():
        try:
            resume = json.loads(run_file.read_text(encoding="utf-8")).get("fingerprint") == config.fingerprint()
        except (json.JSONDecodeError, UnicodeDecodeError):
            resume = False
    if resume:
        ctx.say(f"    resuming the interrupted run in {work}")
    from dataclasses import replace

    config = replace(config, resume=resume, overwrite=True, work_dir=str(work))
    report = (finetune if stage == "finetune" else distill)(config)
    if report.get("stopped"):
        raise KdtoolError(f"{stage} stopped at step {report['step']} before the end; rerun to resume it")
    best = report.get("best") or {}
    return {"dev_f1": best.get("f1"), "dev_exact_match": best.get("exact_match"), "best_epoch": best.get("epoch"),
            "parameters": report["student"]["parameters"], "layers": report["student"]["layers"],
            "teacher_parameters": (report.get("teacher") or {}).get("parameters"),
            "seconds": report.get("total_seconds"), "evals": report.get("evals")}


def train_command(ctx: StageContext, stage: str) -> str:
    from dataclasses import fields

    from kdtool.distill.config import RESUMABLE_FIELDS, DistillConfig, TrainConfig

    cls = TrainConfig if stage == "finetune" else DistillConfig
    section = ctx.recipe.section(stage)
    model = section.pop("model", None) if stage == "finetune" else (
        str(ctx.run.path(TEACHER)) if ctx.recipe.has("finetune") else section.get("teacher"))
    section.pop("teacher", None)
    if model and model.startswith("package:"):
        model = resolve_model(model, f"{stage} model")
    feats = _features(ctx.recipe)
    options = [("--train", ctx.run.path(TRAIN)), ("--dev", ctx.run.path(DEV)),
               ("-o", ctx.run.path(TEACHER if stage == "finetune" else STUDENT)),
               ("--lang", ctx.recipe.section("data").get("lang", "es")), ("--max-length", feats.max_length),
               ("--doc-stride", feats.doc_stride), ("--max-query-length", feats.max_query_length)]
    defaults = {f.name: f.default for f in fields(cls)}
    for key, value in section.items():
        if key in RESUMABLE_FIELDS or value == defaults.get(key):
            continue
        if isinstance(value, bool):
            options.append((f"--{key.replace('_', '-')}" if value else f"--no-{key.replace('_', '-')}", True))
        else:
            options.append((f"--{key.replace('_', '-')}", value))
    return _line(stage, [model], options + [("--overwrite", True)])


# ---------------------------------------------------------------------------------------------
# export


def _export_config(ctx: StageContext, precision: str):
    from kdtool.export.config import ExportConfig

    section = ctx.recipe.section("export")
    section.pop("precisions", None)
    calibration = section.pop("calibration", None)
    if calibration not in (None, "train", "dev"):
        raise InputError(f"export.calibration must be train, dev or null, got {calibration!r}")
    section.setdefault("max_seq_length", _features(ctx.recipe).max_length)
    return ExportConfig(model_dir=ctx.run.path(PRUNED if ctx.recipe.has("prune") else STUDENT), output=ctx.run.path(bundle_rel(precision)), precision=precision,
                        calibration_data=ctx.run.path(TRAIN if calibration == "train" else DEV) if calibration else None,
                        overwrite=True, **section)


def run_export(ctx: StageContext) -> dict:
    from kdtool.export.pipeline import export_model
    from kdtool.models import dir_size_bytes

    out = {}
    for p in precisions(ctx.recipe):
        ctx.say(f"    {p}:")
        path = export_model(_export_config(ctx, p), progress=lambda m: ctx.say(f"      {m}"))
        out[p] = {"path": str(path), "size_bytes": dir_size_bytes(path)}
    return {"bundles": out}


def export_command(ctx: StageContext) -> str:
    lines = []
    for p in precisions(ctx.recipe):
        c = _export_config(ctx, p)
        lines.append(_line("export", [c.model_dir], [
            ("-o", c.output), ("--precision", p), ("--calibration-data", c.calibration_data),
            ("--calibration-method", None if c.calibration_method == "minmax" else c.calibration_method),
            ("--max-seq-length", c.max_seq_length), ("--no-fuse", not c.fuse), ("--profile", c.profile),
            ("--trt", c.trt), ("--per-tensor", not c.per_channel), ("--overwrite", True)]))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# validate


def _validate_models(ctx: StageContext) -> list[str]:
    reference = ctx.recipe.section("validate").get("reference", "student")
    models = engines(ctx)
    if reference not in ("student", "teacher"):
        raise InputError(f"validate.reference must be student or teacher, got {reference!r}")
    first = models.pop(reference)
    return [first, *models.values()]


def _validate_config(ctx: StageContext):
    from kdtool.validate import ValidateConfig

    section = ctx.recipe.section("validate")
    section.pop("reference", None)
    return ValidateConfig(models=tuple(_validate_models(ctx)), data=str(ctx.run.path(DEV)),
                          lang=ctx.recipe.section("data").get("lang", "es"), features=_features(ctx.recipe), **section)


def run_validate(ctx: StageContext) -> dict:
    from kdtool.atomic import atomic_write_json
    from kdtool.validate import format_table, validate

    def progress(event):  # the per-model lines, indented under the stage; window counts are not shown
        if event.message:
            ctx.say(f"    {event.message}")

    result = validate(_validate_config(ctx), progress=progress)
    if result.interrupted:
        raise KeyboardInterrupt
    atomic_write_json(ctx.run.path(VALIDATE_JSON), result.to_dict())
    for line in format_table(result).splitlines():
        ctx.say(f"    {line}")
    names = {v: k for k, v in engines(ctx).items()}
    return {"passed": result.passed, "questions": result.data_report["questions_scored"],
            "models": {names.get(s.path, s.name): {"f1": s.f1, "exact_match": s.exact_match, "f1_drop": s.f1_drop,
                                                   "em_drop": s.em_drop, "agreement": s.agreement,
                                                   "within_budget": s.within_budget} for s in result.scores},
            "reference": names.get(result.scores[0].path) if result.scores else None}


def validate_command(ctx: StageContext) -> str:
    c = _validate_config(ctx)
    return _line("validate", list(c.models), [
        ("--data", c.data), ("--lang", c.lang), ("--max-f1-drop", c.max_f1_drop), ("--limit", c.limit),
        ("--max-length", c.features.max_length), ("--doc-stride", c.features.doc_stride),
        ("--json", ctx.run.path(VALIDATE_JSON))])


# ---------------------------------------------------------------------------------------------
# profile


def _profile_config(ctx: StageContext):
    from kdtool.profiles.profiler import ProfileConfig

    section = ctx.recipe.section("profile")
    data = section.pop("data", "dev")
    if data not in (None, "train", "dev"):
        raise InputError(f"profile.data must be dev, train or null, got {data!r}")
    e = engines(ctx)
    models = [e.pop("teacher"), e.pop("student"), *e.values()]
    return ProfileConfig(models=models, data=str(ctx.run.path(TRAIN if data == "train" else DEV)) if data else None,
                         **section)


def run_profile(ctx: StageContext) -> dict:
    from kdtool.atomic import atomic_write_json, atomic_write_text
    from kdtool.profiles.profiler import profile_models
    from kdtool.profiles.report import format_markdown, format_table, write_plot

    last = [None]

    def on_progress(done, total, what):
        if what != last[0]:
            ctx.say(f"    [{100 * done // max(total, 1):3d}%] {what}")
            last[0] = what

    result = profile_models(_profile_config(ctx), on_progress)
    if result.interrupted:
        raise KeyboardInterrupt
    report = result.to_dict()
    atomic_write_json(ctx.run.path(PROFILE_JSON), report)
    atomic_write_text(ctx.run.path(PROFILE_MD), format_markdown(report))
    write_plot(report, ctx.run.path(PLOT))
    for line in format_table(report).splitlines():
        ctx.say(f"    {line}")
    from kdtool.demo.report import profile_summary

    return profile_summary(report, engines(ctx))


def profile_command(ctx: StageContext) -> str:
    c = _profile_config(ctx)
    return _line("profile", c.models, [
        ("--profile", c.profile), ("--seq-len", c.seq_lengths), ("--batch-size", c.batch_sizes), ("--data", c.data),
        ("--data-limit", c.data_limit if c.data else None), ("--runs", c.runs), ("--warmup", c.warmup),
        ("--threads", c.threads), ("--json", ctx.run.path(PROFILE_JSON)), ("--markdown", ctx.run.path(PROFILE_MD)),
        ("--plot", ctx.run.path(PLOT))])


# ---------------------------------------------------------------------------------------------
# report


def run_report(ctx: StageContext) -> dict:
    from kdtool.demo.report import write_report

    return write_report(ctx)
