"""``kdtool export``: a Hugging Face QA model directory -> a deployable bundle."""

from __future__ import annotations

import json
from pathlib import Path

import click

from kdtool.cli.options import COUNT, TOKENS
from kdtool.export.config import CALIBRATION_METHODS, PRECISIONS


@click.command("export")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Bundle directory to write.")
@click.option("--precision", type=click.Choice(PRECISIONS), default=None,
              help="Graph precision [default: the profile's, else fp32].")
@click.option("--calibration-data", type=click.Path(path_type=Path), default=None,
              help="SQuAD JSON whose windows calibrate INT8 static / TensorRT INT8 and feed the parity check.")
@click.option("--calibration-method", type=click.Choice(CALIBRATION_METHODS), default="minmax", show_default=True,
              help="How activation ranges are chosen from the calibration windows.")
@click.option("--calibration-samples", type=COUNT, default=128, show_default=True,
              help="Windows fed to the calibrator.")
@click.option("--no-fuse", is_flag=True, help="Skip ORT transformer fusion (Attention, SkipLayerNorm, BiasGelu).")
@click.option("--opset", type=click.IntRange(11, 23), default=18, show_default=True, help="ONNX opset.")
@click.option("--max-seq-length", type=TOKENS, default=None,
              help="Longest window the bundle answers with [default: the profile's, else 384].")
@click.option("--profile", "profile", default=None, help="Device profile name (kdtool profiles lists them).")
@click.option("--trt", is_flag=True, help="Also write a TensorRT-ready ONNX and build the engine where possible.")
@click.option("--per-channel/--per-tensor", default=True, show_default=True,
              help="INT8 weight scales per output channel (more accurate, as fast on CPU) or one per tensor.")
@click.option("--reduce-range", is_flag=True,
              help="7-bit INT8 weights, for x86 CPUs without VNNI (AVX2): avoids their saturating u8 x s8 products.")
@click.option("--fast-gelu", is_flag=True,
              help="Fuse GELU as ORT FastGelu (tanh approximation): a few percent faster on CPU, logits change slightly.")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle directory (only one kdtool wrote).")
@click.option("--sign-key", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="KEY",
              help="Sign the bundle with this EC private key (kdtool keygen): model.sig, OpenSSF Model Signing; devices "
                   "check it with --require-signature or model_signing verify.")
@click.option("--trust-remote-code", is_flag=True,
              help="Let MODEL_DIR run its own Python code (auto_map). Only for code you have read.")
def command(model_dir, output, precision, calibration_data, calibration_method, calibration_samples, no_fuse, opset,
            max_seq_length, profile, trt, per_channel, reduce_range, fast_gelu, overwrite, sign_key, trust_remote_code):
    """Export MODEL_DIR (a *ForQuestionAnswering directory) to a verified bundle at -o."""
    from kdtool.export.config import ExportConfig
    from kdtool.export.pipeline import export_model
    from kdtool.paths import guard_outputs
    from kdtool.progress import console

    guard_outputs({"MODEL_DIR": model_dir, "--calibration-data": calibration_data, "--sign-key": sign_key},
                  {"-o": output})
    key = None
    if sign_key:
        from kdtool.bundle.signing import check_signing_key
        from kdtool.bundle.verified import sign_bundle

        key = check_signing_key(sign_key)  # a bad key is found now, not after the export

    config = ExportConfig(model_dir=model_dir, output=output, precision=precision, calibration_data=calibration_data,
                          calibration_method=calibration_method, calibration_samples=calibration_samples,
                          fuse=not no_fuse, opset=opset, max_seq_length=max_seq_length, profile=profile, trt=trt,
                          per_channel=per_channel, reduce_range=reduce_range, fast_gelu=fast_gelu, overwrite=overwrite,
                          trust_remote_code=trust_remote_code)
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
