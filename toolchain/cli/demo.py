"""``kdtool demo``: the whole pipeline on a laptop CPU in minutes, nothing downloaded."""

from __future__ import annotations

import sys

import click

from kdtool.cli.options import SEED


@click.command("demo", context_settings={"show_default": True})
@click.option("-o", "--output", default="demo-output", type=click.Path(file_okay=False),
              help="Directory for everything the demo makes. Rerunning into it skips what is done.")
@click.option("--seed", default=0, type=SEED, help="Seed of the synthetic data, the models and the data order.")
@click.option("--fresh", is_flag=True, help="Redo every stage even if the directory holds a finished demo.")
@click.option("--progress/--no-progress", default=True, help="Show progress bars (on a terminal) or progress lines (in a log).")
def command(output, seed, fresh, progress):
    """Generate Spanish QA data, train a small RoBERTa teacher, distil a student, export it to INT8,
    validate and profile all three, and write DIR/report.md.

    \b
    Stages (each one a kdtool library call; the report lists the command that redoes it by hand):
      prepare   synthetic train/dev set, byte-level BPE tokenizer, base RoBERTa
      finetune  the teacher on the synthetic train set         (kdtool finetune)
      distill   a smaller student, two-stage TinyBERT            (kdtool distill)
      export    the student as an INT8 ONNX bundle               (kdtool export)
      validate  F1/EM of teacher, student, bundle; export drift  (kdtool validate)
      profile   latency and speed-ups against the teacher        (kdtool profile)
    """
    from kdtool.demo.pipeline import DemoConfig, run_demo
    from kdtool.progress import console
    from kdtool.recipes.report import summary_lines

    config = DemoConfig(output=output, seed=seed)
    click.echo(f"kdtool demo -> {output} (seed {seed})")
    with console(sys.stdout, bars=progress) as show:
        result = run_demo(config, progress=show, fresh=fresh)
    r = result.report
    d = r.get("data") or {}
    click.echo(f"\nDemo finished in {result.seconds:.0f} s "
               f"({d.get('train_questions')} train / {d.get('dev_questions')} dev synthetic questions).")
    for line in summary_lines(r):
        click.echo(line)
    click.echo(f"\nReport:    {result.run_dir / 'report.md'}  (report.json, latency.png beside it)")
    click.echo("Artifacts: " + ", ".join(f"{k} {v}" for k, v in r["artifacts"].items()
                                         if k in ("teacher", "student") or k.startswith("bundle-")))
    click.echo("Rerun a step by hand (the full commands are in report.md):")
    for stage, cmd in r["commands"].items():
        click.echo(f"  {stage:<9} {cmd.splitlines()[0].split(' --')[0]} ...")
    click.echo(f"  all       {r['demo']['rerun']}")
