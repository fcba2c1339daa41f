"""Recipes: one YAML file that runs data -> (finetune) -> distill -> (prune) -> export -> validate -> profile -> report.

    sections      the schema: which keys each section takes (read from the library config dataclasses), Recipe
    checking      values checked and coerced against those types; paths made absolute
    loading       finding a recipe by name or path, --override, parse_recipe / load_recipe
    run_dir       a run directory and the records that make a stage "done"
    context       StageContext, where a run's files are, model references resolved
    commands      the one field -> CLI option mapping behind every "redo this stage by hand" command line
    *_stage       one module per stage: its library config, its run, its command line
    report        report.json / report.md of a run and the printed summary
    runner        the stage table, which stages are done, run_recipe

The stages and what they call:

    data      kdtool.data.split (load, and split by article)       -> data/train.json, data/dev.json
    finetune  kdtool.distill.finetune (optional)                    -> teacher/
    distill   kdtool.distill.distill                                -> student/
    prune     kdtool.prune.prune (optional)                         -> student-pruned/
    export    kdtool.export.pipeline.export_model per precision     -> bundle-<precision>/
    validate  kdtool.validate.validate                              -> validate.json
    profile   kdtool.profiles.profiler.profile_models               -> profile.json, profile.md, latency.png
    report    kdtool.recipes.report                                 -> report.md, report.json

This package sits above the library (data, distill, prune, export, validate, profiles) and below
``kdtool.demo`` and ``kdtool.cli``: it never imports either of them.
"""

from kdtool.recipes.loading import REPO_RECIPES, available_recipes, find_recipe, load_recipe, parse_override, parse_recipe
from kdtool.recipes.sections import HUB_ID, SECTIONS, Recipe

__all__ = ["HUB_ID", "REPO_RECIPES", "SECTIONS", "Recipe", "available_recipes", "find_recipe", "load_recipe",
           "parse_override", "parse_recipe"]
