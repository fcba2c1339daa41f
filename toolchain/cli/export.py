"""``kdtool export``: a Hugging Face QA model directory -> a deployable bundle."""

from __future__ import annotations

import json
from pathlib import Path

import click

from kdtool.cli.config_options import build_config, config_options
from kdtool.export.config import ExportConfig


@click.command("export")
@click.argument("model_dir", type=click.Path(path_type=Path))
@config_options(ExportConfig)
@click.option("--sign-key", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="KEY",
              help="Sign the bundle with this EC private key (kdtool keygen): model.sig, OpenSSF Model Signing; devices "
                   "check it with --require-signature or model_signing verify.")
def command(sign_key, **options):
    """Export MODEL_DIR (a *ForQuestionAnswering directory) to a verified bundle at -o."""
    from kdtool.export.pipeline import export_model
    from kdtool.paths import guard_outputs
    from kdtool.progress import console

    guard_outputs({"MODEL_DIR": options["model_dir"], "--calibration-data": options["calibration_data"],
                   "--sign-key": sign_key}, {"-o": options["output"]})
    key = None
    if sign_key:
        from kdtool.bundle.signing import check_signing_key
        from kdtool.bundle.verified import sign_bundle

        key = check_signing_key(sign_key)  # a bad key is found now, not after the export

    config = build_config(ExportConfig, options)
    with console() as progress:
        bundle = export_model(config, progress=progress)
    if key is not None:
        sign_bundle(bundle, key)  # under the output lock guard_outputs took
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    diff = manifest["parity"]["bundle"].get("max_abs_logit_diff")
    click.echo(f"bundle {bundle}: {manifest['precision']}, max |logit diff| vs PyTorch "
               f"{'n/a' if diff is None else f'{diff:.2e}'}, {len(manifest['files'])} files{', signed' if key else ''}")
    trt_section = manifest.get("tensorrt")
    if trt_section and not trt_section["built"]:
        click.echo(f"TensorRT engine not built here ({trt_section['reason']}); on the target device run: "
                   f"kdtool build-engine {bundle}")
