"""``kdtool profile``: latency and throughput of several models side by side (thin layer over
:func:`kdtool.profiles.profiler.profile_models`)."""

from __future__ import annotations

from pathlib import Path

import click

from kdtool.cli.config_options import build_config, config_options
from kdtool.profiles.config import ProfileConfig


def _check_output(path: str | None, option: str) -> Path | None:
    from kdtool.atomic import check_output_file

    return check_output_file(path, option)


@click.command("profile")
@click.argument("models", nargs=-1, required=True, metavar="REFERENCE [MODEL_OR_BUNDLE ...]")
@config_options(ProfileConfig)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Write the result as JSON (profiles/SCHEMA.md).")
@click.option("--markdown", "markdown_out", type=click.Path(dir_okay=False), default=None, help="Write the tables as Markdown.")
@click.option("--plot", "plot_out", type=click.Path(dir_okay=False), default=None,
              help="Write a PNG: latency against sequence length, speed-up against the reference.")
@click.pass_context
def command(ctx, json_out, markdown_out, plot_out, **options):
    """Latency and throughput of REFERENCE (usually the teacher) and every other model or bundle,
    measured in one run, interleaved, with speed-ups against REFERENCE.

    \b
    Example:
      kdtool profile teacher student bundle --seq-len 128,384 --data dev.json --plot latency.png
      kdtool profile teacher student --device cuda --torch-variant fp16:sdpa --torch-variant bf16:torch-triton
    """
    from kdtool.atomic import atomic_write_json, atomic_write_text
    from kdtool.paths import guard_outputs
    from kdtool.profiles.profiler import profile_models
    from kdtool.profiles.report import format_markdown, format_table, write_plot
    from kdtool.progress import console

    guard_outputs({"MODELS": list(options["models"]), "--data": options["data"]},
                  {"--json": json_out, "--markdown": markdown_out, "--plot": plot_out})
    outputs = {"json": _check_output(json_out, "--json"), "markdown": _check_output(markdown_out, "--markdown"),
               "plot": _check_output(plot_out, "--plot")}
    config = build_config(ProfileConfig, options, models=list(options["models"]))
    with console() as progress:  # bars on a terminal, a line per shape and per 10% in a log
        result = profile_models(config, progress=progress)
    report = result.to_dict()
    click.echo(format_table(report))
    if outputs["json"]:
        atomic_write_json(outputs["json"], report)
    if outputs["markdown"]:
        atomic_write_text(outputs["markdown"], format_markdown(report))
    if outputs["plot"]:
        write_plot(report, outputs["plot"])
    written = [str(p) for p in outputs.values() if p]
    if written:
        click.echo(f"wrote {', '.join(written)}", err=True)
    if result.interrupted:
        click.echo("Interrupted: the tables above hold what was measured before Ctrl-C.", err=True)
        ctx.exit(130)
