"""The ``export`` stage: :func:`kdtool.export.pipeline.export_model` per precision -> ``bundle-<precision>/``.

The section takes :class:`~kdtool.export.config.ExportConfig` fields, plus ``precisions`` (one bundle
each) and ``calibration`` (``train``, ``dev`` or null: which split calibrates). With a prune stage the
pruned student is exported.
"""

from __future__ import annotations

from kdtool.errors import InputError
from kdtool.export.config import ExportConfig
from kdtool.export.pipeline import export_model
from kdtool.models import dir_size_bytes
from kdtool.recipes.commands import EXPORT, command_line
from kdtool.recipes.context import DEV, PRUNED, STUDENT, TRAIN, StageContext, bundle_rel, features, precisions


def _export_config(ctx: StageContext, precision: str):
    section = ctx.recipe.section("export")
    section.pop("precisions", None)
    calibration = section.pop("calibration", None)
    if calibration not in (None, "train", "dev"):
        raise InputError(f"export.calibration must be train, dev or null, got {calibration!r}")
    section.setdefault("max_seq_length", features(ctx.recipe).max_length)
    return ExportConfig(model_dir=ctx.run.path(PRUNED if ctx.recipe.has("prune") else STUDENT),
                        output=ctx.run.path(bundle_rel(precision)), precision=precision,
                        calibration_data=ctx.run.path(TRAIN if calibration == "train" else DEV) if calibration else None,
                        overwrite=True, **section)


def run_export(ctx: StageContext) -> dict:
    out = {}
    for p in precisions(ctx.recipe):
        ctx.say(f"    {p}:")
        path = export_model(_export_config(ctx, p), progress=ctx.nested("      "))
        out[p] = {"path": str(path), "size_bytes": dir_size_bytes(path)}
    return {"bundles": out}


def export_command(ctx: StageContext) -> str:
    return "\n".join(command_line(EXPORT, _export_config(ctx, p)) for p in precisions(ctx.recipe))
