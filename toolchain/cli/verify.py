"""``kdtool verify``: check a bundle's checksums, schema and (with --public-key) its signature and version."""

from __future__ import annotations

import click


@click.command("verify")
@click.argument("bundle", type=click.Path())
@click.option("--public-key", type=click.Path(dir_okay=False), default=None, metavar="PUB",
              help="Also require a valid signature by this public key: EC checks the OpenSSF Model Signing model.sig, "
                   "Ed25519 the deprecated manifest.sig.")
@click.option("--min-version", default=None, metavar="TIME",
              help="With --public-key: refuse a bundle exported before TIME (UTC, e.g. 2026-03-01T12:00:00Z).")
def command(bundle, public_key, min_version):
    """Verify BUNDLE: every file against manifest.json, the manifest's schema, the signature and version.

    Exit 0 and one line (with the bundle's version, its export time) when everything holds; one error
    line and exit 2 otherwise.
    """
    from kdtool.bundle.signing import SignatureRequirement, bundle_version, parse_version
    from kdtool.bundle.verified import open_verified_bundle

    if min_version is not None and not public_key:
        raise click.UsageError("--min-version needs --public-key PUB: the version checked is the signed one")
    key = SignatureRequirement(public_key, parse_version(min_version) if min_version else None) if public_key else None
    verified = open_verified_bundle(bundle, public_key=key)
    signed = f", signed by {public_key}" if public_key else ""
    version = bundle_version(verified.manifest)
    click.echo(f"bundle {bundle}: {len(verified.data)} files verified{signed}; version "
               f"{f'{version:%Y-%m-%dT%H:%M:%SZ}' if version else 'unknown'}")
