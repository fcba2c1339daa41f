"""The ``profile`` stage: :func:`kdtool.profiles.profiler.profile_models` of every model the run made ->
``profile.json``, ``profile.md``, ``latency.png``; speed-ups against the teacher.

The section takes :class:`~kdtool.profiles.profiler.ProfileConfig` fields; ``data`` names the split
(dev, train or null) whose real question lengths are also measured.
"""

from __future__ import annotations

from kdtool.atomic import atomic_write_json, atomic_write_text
from kdtool.errors import InputError
from kdtool.profiles.profiler import ProfileConfig, profile_models
from kdtool.profiles.report import format_markdown, format_table, write_plot
from kdtool.recipes.commands import PROFILE, command_line
from kdtool.recipes.context import DEV, PLOT, PROFILE_JSON, PROFILE_MD, TRAIN, StageContext, engines
from kdtool.recipes.report import profile_summary


def _profile_config(ctx: StageContext):
    section = ctx.recipe.section("profile")
    data = section.pop("data", "dev")
    if data not in (None, "train", "dev"):
        raise InputError(f"profile.data must be dev, train or null, got {data!r}")
    e = engines(ctx)
    models = [e.pop("teacher"), e.pop("student"), *e.values()]
    return ProfileConfig(models=models, data=str(ctx.run.path(TRAIN if data == "train" else DEV)) if data else None,
                         **section)


def run_profile(ctx: StageContext) -> dict:
    result = profile_models(_profile_config(ctx), progress=ctx.nested())
    if result.interrupted:
        raise KeyboardInterrupt
    report = result.to_dict()
    atomic_write_json(ctx.run.path(PROFILE_JSON), report)
    atomic_write_text(ctx.run.path(PROFILE_MD), format_markdown(report))
    write_plot(report, ctx.run.path(PLOT))
    for line in format_table(report).splitlines():
        ctx.say(f"    {line}")
    return profile_summary(report, engines(ctx))


def profile_command(ctx: StageContext) -> str:
    config = _profile_config(ctx)
    return command_line(PROFILE, config, extra=[("--json", ctx.run.path(PROFILE_JSON)),
                                                ("--markdown", ctx.run.path(PROFILE_MD)), ("--plot", ctx.run.path(PLOT))])
