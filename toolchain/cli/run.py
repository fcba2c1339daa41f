"""``kdtool run RECIPE``: distill -> export -> validate -> profile from one YAML recipe, resuming."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("run", context_settings={"show_default": True})
@click.argument("recipe", required=False)
@click.option("-o", "--output", "run_dir", type=click.Path(file_okay=False), default=None,
              help="Run directory [default: runs/<recipe name>]. Rerunning into it skips the stages already done.")
@click.option("--override", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Change one recipe value, e.g. distill.epochs=3 or export.precisions=[fp16,int8] (YAML values; "
                   "repeatable; relative paths are relative to the current directory).")
@click.option("--force", "force", multiple=True, metavar="STAGE",
              help="Run STAGE (and every later one) even if it is done.")
@click.option("--dry-run", is_flag=True, help="Print the resolved recipe and which stages would run, then stop.")
@click.option("--list", "list_recipes", is_flag=True, help="List the recipes found by name and stop.")
@click.option("--progress/--no-progress", default=True, help="Show progress bars (on a terminal) or progress lines (in a log).")
def command(recipe, run_dir, overrides, force, dry_run, list_recipes, progress):
    """Run RECIPE (a .yaml path, or the name of one in recipes/) stage by stage in a run directory.

    \b
    Stages: data -> finetune (optional) -> distill -> export -> validate -> profile -> report.
    A stage whose output exists and whose configuration is unchanged (stages/<name>.json) is
    skipped; a changed configuration reruns that stage and every later one.

    \b
    Examples:
      kdtool run minilm-squad-es-cpu
      kdtool run spanish-tinyroberta -o runs/paper --override distill.teacher=/models/teacher
    """
    from kdtool.recipes import available_recipes, load_recipe
    from kdtool.recipes.runner import STAGES, plan

    if list_recipes:
        for name in available_recipes():
            click.echo(name)
        return
    if not recipe:
        raise click.UsageError("give a RECIPE (a .yaml path or a name; kdtool run --list shows the names)")
    r = load_recipe(recipe, overrides)
    for stage in force:
        if stage not in STAGES:
            raise click.BadParameter(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}", param_hint="--force")
    run_dir = Path(run_dir or Path("runs") / r.name)
    if dry_run:
        click.echo(r.to_yaml().rstrip())
        click.echo(f"# run directory: {run_dir}")
        for name, done in plan(r, run_dir):
            click.echo(f"#   {name:<9} {'done, would be skipped' if done and name not in force else 'would run'}")
        return
    from kdtool.paths import guard_outputs

    guard_outputs({"RECIPE": r.source if Path(r.source).is_file() else None}, {"--output": run_dir})
    from kdtool.progress import console
    from kdtool.recipes.report import load_report, summary_lines
    from kdtool.recipes.runner import run_recipe

    click.echo(f"kdtool run {r.name} ({r.source}) -> {run_dir}")
    with console(sys.stdout, bars=progress) as show:
        result = run_recipe(r, run_dir, progress=show, force=tuple(force))

    click.echo("")
    for line in summary_lines(load_report(run_dir)):
        click.echo(line)
    click.echo(f"\nReport: {run_dir / 'report.md'} (and report.json); stages run: {', '.join(result.ran) or 'none'}"
               f"{'; skipped: ' + ', '.join(result.skipped) if result.skipped else ''}; {result.seconds:.0f} s")
    if not result.passed:
        click.echo("FAIL: a bundle drifted more than validate.max_f1_drop from the reference (see validate.json).",
                   err=True)
        raise SystemExit(1)
