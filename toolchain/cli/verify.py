"""``kdtool verify``: check a bundle's checksums, schema and (with --public-key) its signature."""

from __future__ import annotations

import click


@click.command("verify")
@click.argument("bundle", type=click.Path())
@click.option("--public-key", type=click.Path(dir_okay=False), default=None, metavar="PUB",
              help="Also require a valid Ed25519 signature of the manifest by this public key.")
def command(bundle, public_key):
    """Verify BUNDLE: every file against manifest.json, the manifest's schema, and the signature.

    Exit 0 and one line when everything holds; one error line and exit 2 otherwise.
    """
    from kdtool.bundle.verified import open_verified_bundle

    verified = open_verified_bundle(bundle, public_key=public_key)
    signed = f", signed by {public_key}" if public_key else ""
    click.echo(f"bundle {bundle}: {len(verified.data)} files verified{signed}")
