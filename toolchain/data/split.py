"""Train and dev files from one SQuAD pool, split by article: the one split that ``kdtool split`` and a
recipe's data stage both make (no context shared between train and dev; deterministic per seed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kdtool.atomic import atomic_write_json
from kdtool.data.squad import SquadDataset, load_squad, split_by_article, to_squad_json
from kdtool.fields import setting


@dataclass(frozen=True)
class SplitConfig:
    data: str = setting(argument=True)  # the SQuAD pool
    train: str = setting(type="file", help="Train JSON file to write.")
    dev: str = setting(type="file", help="Dev JSON file to write.")
    # a redo command says both, though they are the defaults: a split is reproduced by its fraction and seed
    dev_fraction: float = setting(0.2, type="share", always=True, help="Fraction of articles in dev.")
    seed: int = setting(0, type="seed", always=True, help="Seed of the article shuffle.")


def write_split(train: SquadDataset, dev: SquadDataset, train_path: str | Path, dev_path: str | Path) -> None:
    atomic_write_json(Path(train_path), to_squad_json(train))
    atomic_write_json(Path(dev_path), to_squad_json(dev))


def split_file(config: SplitConfig) -> tuple[SquadDataset, SquadDataset, SquadDataset]:
    """Load ``config.data``, split it by article and write both files; returns (pool, train, dev)."""
    pool = load_squad(config.data)
    train, dev = split_by_article(pool, config.dev_fraction, config.seed)
    write_split(train, dev, config.train, config.dev)
    return pool, train, dev


def describe(ds: SquadDataset) -> str:
    return f"{len(ds)} questions ({len(ds.articles)} articles)"
