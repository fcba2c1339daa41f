"""``kdtool build-engine``: build a bundle's TensorRT engine on the device that will run it."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("build-engine")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--profile", default=None,
              help="Device profile for the optimization shapes [default: the one recorded in the bundle].")
def command(bundle, profile):
    """Build BUNDLE's TensorRT engine from its TRT-ready ONNX and update the manifest atomically."""
    from kdtool.export.pipeline import build_bundle_engine

    build_bundle_engine(bundle, profile=profile, progress=lambda message: click.echo(message, err=True))
    click.echo(f"engine built into {bundle}")
