"""``kdtool split``: a SQuAD file into train and dev files by article, deterministically."""

from __future__ import annotations

from pathlib import Path

import click

from kdtool.cli.options import FINITE


@click.command(context_settings={"show_default": True})
@click.argument("data", type=click.Path(dir_okay=False))
@click.option("--train", "train_out", required=True, type=click.Path(dir_okay=False), help="Train JSON file to write.")
@click.option("--dev", "dev_out", required=True, type=click.Path(dir_okay=False), help="Dev JSON file to write.")
@click.option("--dev-fraction", type=FINITE, default=0.2, show_default=True, help="Fraction of articles in dev.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the article shuffle.")
def command(data, train_out, dev_out, dev_fraction, seed):
    """Split DATA by article title into train and dev files (no context shared between them)."""
    from kdtool.atomic import atomic_write_json
    from kdtool.paths import guard_outputs

    guard_outputs({"DATA": data}, {"--train": train_out, "--dev": dev_out})
    from kdtool.data import load_squad, split_by_article, to_squad_json

    ds = load_squad(data)
    train, dev = split_by_article(ds, dev_fraction, seed)
    atomic_write_json(Path(train_out), to_squad_json(train))
    atomic_write_json(Path(dev_out), to_squad_json(dev))
    click.echo(f"{ds.report.summary()}\ntrain: {len(train)} questions, {len(train.articles)} articles -> {train_out}\n"
               f"dev: {len(dev)} questions, {len(dev.articles)} articles -> {dev_out}")
