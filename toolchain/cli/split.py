"""``kdtool split``: a SQuAD file into train and dev files by article, deterministically (thin layer over
:func:`kdtool.data.split.split_file`, the split a recipe's data stage makes too)."""

from __future__ import annotations

import click

from kdtool.cli.config_options import build_config, config_options
from kdtool.data.split import SplitConfig


@click.command(context_settings={"show_default": True})
@click.argument("data", type=click.Path(dir_okay=False))
@config_options(SplitConfig)
def command(**options):
    """Split DATA by article title into train and dev files (no context shared between them)."""
    from kdtool.data.split import split_file
    from kdtool.paths import guard_outputs

    config = build_config(SplitConfig, options)
    train_out, dev_out = config.train, config.dev
    guard_outputs({"DATA": config.data}, {"--train": train_out, "--dev": dev_out})
    pool, train, dev = split_file(config)
    click.echo(f"{pool.report.summary()}\ntrain: {len(train)} questions, {len(train.articles)} articles -> {train_out}\n"
               f"dev: {len(dev)} questions, {len(dev.articles)} articles -> {dev_out}")
