"""``kdtool build-engine``: build a bundle's TensorRT engine on the device that will run it."""

from __future__ import annotations

from pathlib import Path

import click

from kdtool.cli.options import require_signature_option


@click.command("build-engine")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--profile", default=None,
              help="Device profile for the optimization shapes [default: the one recorded in the bundle].")
@require_signature_option
@click.option("--sign-key", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="KEY",
              help="Sign the updated manifest (a rebuilt bundle has a new manifest, so an old signature no longer holds).")
def command(bundle, profile, require_signature, sign_key):
    """Build BUNDLE's TensorRT engine from its TRT-ready ONNX and update the manifest atomically."""
    from kdtool.export.pipeline import build_bundle_engine
    from kdtool.progress import console

    key = None
    if sign_key:
        from kdtool.bundle.signing import check_signing_key
        from kdtool.bundle.verified import sign_bundle

        key = check_signing_key(sign_key)
    with console() as progress:
        build_bundle_engine(bundle, profile=profile, progress=progress, require_signature=require_signature)
    if key is not None:
        sign_bundle(bundle, key)
    click.echo(f"engine built into {bundle}{', signed' if key else ''}")
