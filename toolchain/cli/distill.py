"""``kdtool distill``: distil a teacher into a student with a strategy preset (TinyBERT by default).

Every loss, schedule, mapping and student option defaults to the ``--strategy`` preset
(kdtool.strategies); an option given on the command line overrides the preset.
"""

from __future__ import annotations

import click

from kdtool.cli.config_options import build_config, config_options
from kdtool.cli.finetune import PROGRESS, finish
from kdtool.distill.config import DistillConfig
from kdtool.progress import console


@click.command(context_settings={"show_default": True})
@click.argument("model", type=click.Path(), metavar="TEACHER")
@config_options(DistillConfig)
@PROGRESS
def command(progress, **options):
    """Distil TEACHER (a model directory of the task) into a student, with a --strategy preset."""
    from kdtool.distill import distill

    config = build_config(DistillConfig, options)
    with console(bars=progress) as bars:
        report = distill(config, progress=bars)
    finish(report)
