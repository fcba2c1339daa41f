"""``kdtool profiles``: list the device profiles, or show one."""

from __future__ import annotations

import click
import yaml


@click.command("profiles")
@click.argument("name", required=False)
def command(name):
    """List device profiles; with NAME, print that profile as YAML."""
    from kdtool.profiles import get_profile, list_profiles

    if name:
        click.echo(yaml.safe_dump(get_profile(name).to_dict(), sort_keys=False).rstrip())
        return
    for p in list_profiles():
        trt = "TensorRT" if p.tensorrt else "ORT"
        click.echo(f"{p.name:18s} {p.device:4s} {p.precision:5s} {trt:8s} {p.description}")
