"""``kdtool keygen``: an Ed25519 key pair for signing bundles (``export --sign-key``)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("keygen")
@click.argument("private_key", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--public-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where the public key goes [default: PRIVATE_KEY with .pub].")
def command(private_key, public_key):
    """Write a new Ed25519 PRIVATE_KEY (PEM, mode 0600) and its public key (PEM) for signing bundles.

    Keep the private key on the machine that exports; give the .pub file to every device that
    checks bundles (--require-signature). Existing files are never replaced.
    """
    from kdtool.bundle.signing import generate_keypair

    public_key = public_key or private_key.with_suffix(".pub")
    generate_keypair(private_key, public_key)
    click.echo(f"wrote {private_key} (private, keep it secret) and {public_key} (public)")
