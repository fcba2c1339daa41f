"""``kdtool prune``: structured pruning to a parameter, FLOP or latency budget, recovered by distillation.

The recovery options are ``kdtool distill``'s own (taken from its command, so they cannot drift),
except that distill's ``--schedule`` is ``--recovery-schedule`` here (``--schedule`` is the pruning
schedule) and the student is the pruned model itself.
"""

from __future__ import annotations

import copy

import click

from kdtool.cli.config_options import build_config, config_options
from kdtool.cli.distill import command as distill_command
from kdtool.fields import settings, spelling
from kdtool.progress import console
from kdtool.prune.config import PruneConfig

NOT_FOR_PRUNE = {"student", "student_init", "work_dir"}  # the student is the pruned model, in prune's run directory
OWN = {s.key for s in settings(PruneConfig)} | {"progress"}  # prune's own options, where distill has the same name
RECOVERY = {"schedule": "recovery_schedule"}  # distill's options that prune spells otherwise (PruneConfig.recovery)


def _recovery_params() -> list[click.Parameter]:
    params = []
    for p in distill_command.params:
        if p.name in NOT_FOR_PRUNE or (p.name in OWN and p.name not in ("progress", *RECOVERY)) \
                or isinstance(p, click.Argument):
            continue
        if p.name == "schedule":
            p = copy.copy(p)
            p.name, p.opts = RECOVERY["schedule"], [spelling(PruneConfig, "recovery").keys["schedule"]]
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
@config_options(PruneConfig, custom={"structures": click.option("--prune", "structures", cls=UnitsOption,
                                                                 help="Structures to remove, comma-separated")})
def _command(progress, **options):
    """Prune MODEL_DIR (heads, FFN neurons, layers; hidden dimensions when asked) to a budget and recover it
    by distillation from the teacher."""
    from kdtool.prune import prune

    own = {k: options.pop(k) for k in list(options) if k in OWN}
    back = {v: k for k, v in RECOVERY.items()}
    config = build_config(PruneConfig, own, recovery={back.get(k, k): v for k, v in options.items()})
    with console(bars=progress) as bars:
        report = prune(config, progress=bars)
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
