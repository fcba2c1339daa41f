"""What every stage of a run shares: the :class:`StageContext`, where a run's files are, and model references.

Paths inside the run directory are constants here (``TRAIN``, ``STUDENT``, ``PLOT``, ...), so the
stages, the runner and the report name each file once.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from kdtool.data import FeatureConfig
from kdtool.errors import InputError
from kdtool.metrics import DEFAULT_LANG
from kdtool.progress import Progress, prefixed, say
from kdtool.recipes.run_dir import RunDir
from kdtool.recipes.sections import HUB_ID, Recipe

TRAIN, DEV = "data/train.json", "data/dev.json"
TEACHER, STUDENT, PRUNED = "teacher", "student", "student-pruned"
VALIDATE_JSON = "validate.json"
PROFILE_JSON, PROFILE_MD, PLOT = "profile.json", "profile.md", "latency.png"
REPORT_MD, REPORT_JSON = "report.md", "report.json"
DEFAULT_PRECISIONS = ("int8",)
NESTED = "    "  # the indent of a stage's own lines under its "[i/n] stage" header


@dataclass
class StageContext:
    recipe: Recipe
    run: RunDir
    progress: Progress | None = None
    summaries: dict = field(default_factory=dict)  # stage -> summary of the stages done so far
    commands: dict = field(default_factory=dict)  # stage -> the kdtool command line(s) that redo it by hand

    def say(self, message: str) -> None:
        say(self.progress, message)

    def nested(self, indent: str = NESTED) -> Progress | None:
        """The progress to hand a library call: its lines indented under the stage's header."""
        return prefixed(self.progress, indent)


def resolve_model(ref: str, what: str) -> str:
    """A local directory for a model reference: a path, ``package:NAME/sub/dir``, or a hub id."""
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
    if not HUB_ID.match(ref):
        raise InputError(f"{what} not found: {ref} (give a model directory, package:NAME/dir or a hub id)")
    try:
        from huggingface_hub import snapshot_download  # only when a recipe names a hub id that is not here yet

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


def features(recipe: Recipe):
    """The recipe's window settings (``features:``) as a FeatureConfig."""
    return FeatureConfig(**recipe.section("features"))


def lang(recipe: Recipe) -> str:
    return recipe.section("data").get("lang", DEFAULT_LANG)
