"""``kdtool prune``: structured pruning to a parameter, FLOP or latency budget, recovered by distillation.

The recovery options are ``kdtool distill``'s own (taken from its command, so they cannot drift),
except that distill's ``--schedule`` is ``--recovery-schedule`` here (``--schedule`` is the pruning
schedule) and the student is the pruned model itself.
"""

from __future__ import annotations

import copy

import click

from kdtool.cli.distill import command as distill_command
from kdtool.cli.options import COUNT, TOKENS, FiniteFloat, option
from kdtool.progress import console

NOT_FOR_PRUNE = {"teacher", "student", "student_init", "work_dir"}
OWN = {"model", "teacher_dir", "target_params", "target_flops", "target_latency_ms", "profile", "seq_len", "structures",
       "prune_schedule", "steps", "importance_examples", "importance_batch_size", "ffn_step", "latency_engine",
       "latency_runs", "recover", "train_file", "dev_file", "output", "task", "resume", "overwrite", "stop_after",
       "progress"}


def _recovery_params() -> list[click.Parameter]:
    params = []
    for p in distill_command.params:
        if p.name in NOT_FOR_PRUNE:
            continue
        if p.name == "schedule":
            p = copy.copy(p)
            p.name, p.opts = "recovery_schedule", ["--recovery-schedule"]
            p.help = p.help.replace("[default: from --strategy]", "[default: two-stage, --intermediate-epochs half "
                                    "of --epochs; joint for a single epoch]")
        if p.name == "attention_loss":
            p = copy.copy(p)
            p.help = p.help.replace("[default: from --strategy]", "[default: none: pruned layers keep different "
                                    "head counts from the teacher's]")
        params.append(p)
    return params


class UnitsOption(click.Option):
    """``--prune``: its help lists the registered pruning units and its default is theirs
    (kdtool.prune.units), read only when the help is shown or the command runs: the units load torch,
    and ``kdtool --help`` imports this module."""

    def get_default(self, ctx, call=True):
        from kdtool.prune.units import default_structures

        return ",".join(default_structures())

    def get_help_record(self, ctx):
        from kdtool.prune.units import structures_help

        self.help = f"{self.help.partition(':')[0]}: {structures_help()}."
        return super().get_help_record(ctx)


@click.command(context_settings={"show_default": True})
@click.argument("model", type=click.Path(), metavar="MODEL_DIR")
@option("--teacher", "teacher_dir", type=click.Path(file_okay=False), default=None,
        help="Teacher of scoring and recovery [default: MODEL_DIR itself, unpruned].")
@option("--target-params", default=None, help="Budget: parameters, a count (20M, 5000000) or a share (40%).")
@option("--target-flops", default=None, help="Budget: a share of MODEL_DIR's FLOPs at --seq-len (50%).")
@option("--target-latency", "target_latency_ms", type=FiniteFloat(0, 1e7, min_open=True), default=None,
        help="Budget: p50 milliseconds at batch 1 and --seq-len, measured here under --profile.")
@option("--profile", default=None, help="Device profile (kdtool profiles) for --target-latency: threads, precision.")
@option("--seq-len", type=TOKENS, default=None,
        help="Sequence length of FLOPs and latency [default: the profile's longest, else 384].")
@option("--prune", "structures", cls=UnitsOption, help="Structures to remove, comma-separated")
@option("--schedule", "prune_schedule", type=click.Choice(["one-shot", "iterative"]), default="one-shot",
        help="one-shot: score, prune and recover once; iterative: --steps rounds of score, prune, recover.")
@option("--steps", type=click.IntRange(1, 1000), default=1,
        help="Rounds of an iterative schedule (geometric steps towards the budget).")
@option("--importance-examples", type=COUNT, default=256,
        help="Training questions whose windows score importance: |dL/d mask| summed over batches (first-order "
             "Taylor: Michel et al. 2019 for heads, gradnas-style for FFN neurons, hidden dimensions and layers), "
             "L = hard loss + KL to the teacher.")
@option("--importance-batch-size", type=click.IntRange(1, 1 << 16), default=8, help="Windows per scoring batch.")
@option("--ffn-step", type=COUNT, default=None, help="FFN neurons removed per move [default: width/32, multiple of 8].")
@option("--latency-engine", type=click.Choice(["bundle", "pytorch"]), default="bundle",
        help="What --target-latency measures: the exported bundle at the profile's precision, or the PyTorch model.")
@option("--latency-runs", type=COUNT, default=10, help="Timed runs per measured candidate shape.")
@option("--recover/--no-recover", default=True, help="Distil the teacher into the pruned model after each step.")
def _command(**options):
    """Prune MODEL_DIR (heads, FFN neurons, layers; hidden dimensions when asked) to a budget and recover it
    by distillation from the teacher."""
    from kdtool.prune import PruneConfig, prune

    own = {k: options.pop(k) for k in list(options) if k in OWN}
    recovery = {("schedule" if k == "recovery_schedule" else k): v for k, v in options.items()}
    config = PruneConfig(
        model=own["model"], output=own["output"], train_file=own["train_file"], dev_file=own["dev_file"],
        teacher=own["teacher_dir"], task=own["task"], target_params=own["target_params"],
        target_flops=own["target_flops"], target_latency_ms=own["target_latency_ms"], profile=own["profile"],
        seq_len=own["seq_len"], structures=own["structures"], schedule=own["prune_schedule"], steps=own["steps"],
        importance_examples=own["importance_examples"], importance_batch_size=own["importance_batch_size"],
        ffn_step=own["ffn_step"], latency_engine=own["latency_engine"], latency_runs=own["latency_runs"],
        recover=own["recover"], recovery=recovery, resume=own["resume"], overwrite=own["overwrite"],
        stop_after=own["stop_after"])
    with console(bars=own["progress"]) as progress:
        report = prune(config, progress=progress)
    if report.get("stopped"):
        click.echo(f"stopped in step {report['prune_step']} after recovery step {report['step']}; continue with --resume")
        return
    lat = report["latency"]
    speed = f", {lat['p50_ms_before']:.1f} -> {lat['p50_ms_after']:.1f} ms ({lat['speedup']:.2f}x)" if lat else ""
    click.echo(f"wrote {report['config']['output']}: {report['after']['parameters'] / 1e6:.2f}M parameters "
               f"({100 * report['parameters_kept']:.0f}%), {100 * report['flops_kept']:.0f}% FLOPs at seq "
               f"{report['seq_len']}{speed}")


_command.params.extend(_recovery_params())
command = _command
