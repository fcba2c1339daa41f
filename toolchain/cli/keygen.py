"""``kdtool keygen``: an EC key pair for signing bundles (``export --sign-key``, OpenSSF Model Signing)."""

from __future__ import annotations

from pathlib import Path

import click

from kdtool.bundle.signing import CURVES


@click.command("keygen")
@click.argument("private_key", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--public-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where the public key goes [default: PRIVATE_KEY with .pub].")
@click.option("--curve", type=click.Choice(CURVES), default="P-256", show_default=True,
              help="The elliptic curve (OpenSSF Model Signing takes these three).")
def command(private_key, public_key, curve):
    """Write a new EC PRIVATE_KEY (PEM, mode 0600) and its public key (PEM) for signing bundles.

    Keep the private key on the machine that exports; give the .pub file to every device that
    checks bundles (--require-signature, or model_signing verify key). Both files are created or
    neither, and existing files are never replaced.
    """
    from kdtool.bundle.signing import generate_keypair

    public_key = public_key or private_key.with_suffix(".pub")
    generate_keypair(private_key, public_key, curve)
    click.echo(f"wrote {private_key} (EC {curve} private key, keep it secret) and {public_key} (public)")
