"""``kdtool split``: a SQuAD file into train and dev files by article, deterministically (thin layer over
:func:`kdtool.data.split.split_file`, the split a recipe's data stage makes too)."""

from __future__ import annotations

import click

from kdtool.cli.options import SEED, FiniteFloat


@click.command(context_settings={"show_default": True})
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--train", "train_out", required=True, type=click.Path(dir_okay=False), help="Train JSON file to write.")
@click.option("--dev", "dev_out", required=True, type=click.Path(dir_okay=False), help="Dev JSON file to write.")
@click.option("--dev-fraction", type=FiniteFloat(0, 1, min_open=True, max_open=True), default=0.2, show_default=True,
              help="Fraction of articles in dev.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the article shuffle.")
def command(data, train_out, dev_out, dev_fraction, seed):
    """Split DATA by article title into train and dev files (no context shared between them)."""
    from kdtool.data.split import SplitConfig, split_file
    from kdtool.paths import guard_outputs

    guard_outputs({"DATA": data}, {"--train": train_out, "--dev": dev_out})
    pool, train, dev = split_file(SplitConfig(data, train_out, dev_out, dev_fraction, seed))
    click.echo(f"{pool.report.summary()}\ntrain: {len(train)} questions, {len(train.articles)} articles -> {train_out}\n"
               f"dev: {len(dev)} questions, {len(dev.articles)} articles -> {dev_out}")
