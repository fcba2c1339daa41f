"""``kdtool profile``: latency and throughput of several models side by side (thin layer over
:func:`kdtool.profiles.profiler.profile_models`)."""

from __future__ import annotations

from pathlib import Path

import click

from kdtool.cli.options import COUNT, require_signature_option, threads_option, trust_remote_code_option


class IntList(click.ParamType):
    """A comma-separated list of positive integers: ``128,256,384``."""

    name = "N[,N...]"

    def __init__(self, max: int = 1 << 20):
        self.max = max

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return list(value)
        try:
            out = [int(x) for x in str(value).split(",") if x.strip()]
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of integers", param, ctx)
        if not out or min(out) < 1 or max(out) > self.max:
            self.fail(f"{str(value)[:40]!r}: give integers from 1 to {self.max}, e.g. 128,256,384", param, ctx)
        return out


def _check_output(path: str | None, option: str) -> Path | None:
    from kdtool.atomic import check_output_file

    return check_output_file(path, option)


@click.command("profile")
@click.argument("models", nargs=-1, required=True, metavar="REFERENCE [MODEL_OR_BUNDLE ...]")
@click.option("--profile", "profile_name", default=None,
              help="Device profile for defaults and device (kdtool profiles lists them). Default: this machine, CPU or CUDA.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None,
              help="Run PyTorch models and bundles here. Default: the profile's, else CUDA when visible.")
@click.option("--torch-variant", "torch_variants", multiple=True, metavar="DTYPE:ATTN",
              help="Open each Hugging Face model directory once per variant, e.g. fp16:sdpa, bf16:torch-triton "
                   "(DTYPE fp32|fp16|bf16, ATTN eager|sdpa|torch-triton); repeat the option. Bundles open once.")
@click.option("--seq-len", type=IntList(), default=None, help="Sequence lengths. Default: the profile's, else 128,256,384.")
@click.option("--batch-size", type=IntList(), default=None,
              help="Batch sizes. Default: the profile's, else 1 on CPU and 1,8 on CUDA.")
@click.option("--data", type=click.Path(dir_okay=False), default=None,
              help="A SQuAD JSON file: also measure latency per question over its real tokenized lengths.")
@click.option("--data-limit", type=COUNT, default=200, help="Questions of --data used (evenly spread).")
@click.option("--runs", type=COUNT, default=None,
              help="Timed runs per model and shape. Default: 20 on CPU, 100 on CUDA.")
@click.option("--warmup", type=COUNT, default=None,
              help="Untimed runs per model and shape first. Default: 3 on CPU, 10 on CUDA.")
@threads_option("CPU threads. Default: the profile's, else all cores.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
              help="Write the result as JSON (profiles/SCHEMA.md).")
@click.option("--markdown", "markdown_out", type=click.Path(dir_okay=False), default=None, help="Write the tables as Markdown.")
@click.option("--plot", "plot_out", type=click.Path(dir_okay=False), default=None,
              help="Write a PNG: latency against sequence length, speed-up against the reference.")
@trust_remote_code_option("model directories", "their")
@require_signature_option
@click.pass_context
def command(ctx, models, profile_name, device, torch_variants, seq_len, batch_size, data, data_limit, runs, warmup, threads,
            json_out, markdown_out, plot_out, trust_remote_code, require_signature):
    """Latency and throughput of REFERENCE (usually the teacher) and every other model or bundle,
    measured in one run, interleaved, with speed-ups against REFERENCE.

    \b
    Example:
      kdtool profile teacher student bundle --seq-len 128,384 --data dev.json --plot latency.png
      kdtool profile teacher student --device cuda --torch-variant fp16:sdpa --torch-variant bf16:torch-triton
    """
    from kdtool.atomic import atomic_write_json, atomic_write_text
    from kdtool.paths import guard_outputs
    from kdtool.profiles.profiler import ProfileConfig, profile_models
    from kdtool.profiles.report import format_markdown, format_table, write_plot
    from kdtool.progress import console

    guard_outputs({"MODELS": list(models), "--data": data},
                  {"--json": json_out, "--markdown": markdown_out, "--plot": plot_out})
    outputs = {"json": _check_output(json_out, "--json"), "markdown": _check_output(markdown_out, "--markdown"),
               "plot": _check_output(plot_out, "--plot")}
    config = ProfileConfig(models=list(models), profile=profile_name, seq_lengths=seq_len, batch_sizes=batch_size,
                           data=data, data_limit=data_limit, runs=runs, warmup=warmup, threads=threads,
                           trust_remote_code=trust_remote_code, device=device,
                           torch_variants=list(torch_variants) or None,
                           require_signature=require_signature)
    with console() as progress:  # bars on a terminal, a line per shape and per 10% in a log
        result = profile_models(config, progress=progress)
    report = result.to_dict()
    click.echo(format_table(report))
    if outputs["json"]:
        atomic_write_json(outputs["json"], report)
    if outputs["markdown"]:
        atomic_write_text(outputs["markdown"], format_markdown(report))
    if outputs["plot"]:
        write_plot(report, outputs["plot"])
    written = [str(p) for p in outputs.values() if p]
    if written:
        click.echo(f"wrote {', '.join(written)}", err=True)
    if result.interrupted:
        click.echo("Interrupted: the tables above hold what was measured before Ctrl-C.", err=True)
        ctx.exit(130)
