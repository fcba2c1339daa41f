"""The ``validate`` stage: :func:`kdtool.validate.validate` of teacher, student(s) and bundles on dev -> ``validate.json``.

The section takes :class:`~kdtool.validate.ValidateConfig` fields, plus ``reference`` (student or
teacher: what the drift of every other model is measured against).
"""

from __future__ import annotations

from kdtool.atomic import atomic_write_json
from kdtool.errors import InputError
from kdtool.recipes.commands import VALIDATE, command_line
from kdtool.recipes.context import DEV, VALIDATE_JSON, StageContext, engines, features, lang
from kdtool.validate import ValidateConfig, format_table, signature_warning, validate


def _validate_models(ctx: StageContext) -> list[str]:
    reference = ctx.recipe.section("validate").get("reference", "student")
    models = engines(ctx)
    if reference not in ("student", "teacher"):
        raise InputError(f"validate.reference must be student or teacher, got {reference!r}")
    first = models.pop(reference)
    return [first, *models.values()]


def _validate_config(ctx: StageContext):
    section = ctx.recipe.section("validate")
    section.pop("reference", None)
    return ValidateConfig(models=tuple(_validate_models(ctx)), data=str(ctx.run.path(DEV)),
                          lang=lang(ctx.recipe), features=features(ctx.recipe), **section)


def run_validate(ctx: StageContext) -> dict:
    config = _validate_config(ctx)
    result = validate(config, progress=ctx.nested())
    warning = signature_warning(config)
    if warning:
        ctx.say(f"    warning: {warning}")
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
    return command_line(VALIDATE, _validate_config(ctx), extra=[("--json", ctx.run.path(VALIDATE_JSON))])
