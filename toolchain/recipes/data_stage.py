"""The ``data`` stage: load the SQuAD files (and split the pool by article) -> ``data/train.json``, ``data/dev.json``."""

from __future__ import annotations

from pathlib import Path

from kdtool.bundle.manifest import sha256_file
from kdtool.data import load_squad
from kdtool.data.split import SplitConfig, describe, split_file, write_split
from kdtool.errors import InputError
from kdtool.recipes.commands import SPLIT, command_line
from kdtool.recipes.context import DEV, TRAIN, StageContext
from kdtool.recipes.sections import Recipe


def data_inputs(recipe: Recipe) -> dict:
    data = recipe.section("data")
    digests = {}
    for key in ("train", "dev"):
        if data.get(key):
            p = Path(data[key])
            digests[key] = sha256_file(p) if p.is_file() else None  # the data stage says it is missing
    return {"data": data, "sha256": digests}


def _split_config(ctx: StageContext):
    data = ctx.recipe.section("data")
    return SplitConfig(data["train"], str(ctx.run.path(TRAIN)), str(ctx.run.path(DEV)),
                       data.get("dev_fraction", 0.2), data.get("split_seed", 0))


def run_data(ctx: StageContext) -> dict:
    data = ctx.recipe.section("data")
    for key in ("train", "dev"):
        if data.get(key) and not Path(data[key]).is_file():
            raise InputError(f"data.{key}: SQuAD file not found: {data[key]}; set it in the recipe or pass "
                             f"--override data.{key}=PATH")
    if data.get("dev"):
        pool = train = load_squad(data["train"])
        ctx.say(f"    {pool.report.summary()}")
        dev = load_squad(data["dev"])
        ctx.say(f"    {dev.report.summary()}")
        write_split(train, dev, ctx.run.path(TRAIN), ctx.run.path(DEV))
        how = "given files"
    else:
        config = _split_config(ctx)
        pool, train, dev = split_file(config)
        ctx.say(f"    {pool.report.summary()}")
        how = f"split by article: dev fraction {config.dev_fraction}, seed {config.seed}"
    ctx.say(f"    train {describe(train)}, dev {describe(dev)}; {how}")
    return {"split": how, "train_questions": len(train), "dev_questions": len(dev),
            "train_articles": len(train.articles), "dev_articles": len(dev.articles),
            "load_report": pool.report.to_dict()}


def data_command(ctx: StageContext) -> str | None:
    if ctx.recipe.section("data").get("dev"):
        return None
    return command_line(SPLIT, _split_config(ctx))
