"""``kdtool verify``: check a bundle's checksums, schema and (with --public-key) its signature and version;
``--run`` its self-test on this device."""

from __future__ import annotations

import json

import click

from kdtool.cli.options import threads_option


@click.command("verify")
@click.argument("bundle", type=click.Path())
@click.option("--public-key", type=click.Path(dir_okay=False), default=None, metavar="PUB",
              help="Also require a valid signature by this public key: EC checks the OpenSSF Model Signing model.sig, "
                   "Ed25519 the deprecated manifest.sig.")
@click.option("--min-version", default=None, metavar="TIME",
              help="With --public-key: refuse a bundle exported before TIME (UTC, e.g. 2026-03-01T12:00:00Z).")
@click.option("--run", "run", is_flag=True,
              help="Also run the bundle's self-test here: its golden windows through the engine `kdtool answer` would "
                   "use, against the logits they gave where the bundle was certified. Exit 1 when it fails.")
@click.option("--device", default="auto", show_default=True, help="With --run: auto, cpu, cuda[:N] or tensorrt.")
@threads_option()
@click.option("--json", "json_out", is_flag=True, help="With --run: print the self-test result as JSON.")
def command(bundle, public_key, min_version, run, device, threads, json_out):
    """Verify BUNDLE: every file against manifest.json, the manifest's schema, the signature and version.

    Exit 0 and one line (with the bundle's version, its export time) when everything holds; one error
    line and exit 2 otherwise. With --run, a second line says whether this device computes what the bundle
    was certified with (max |logit diff|, argmax agreement, CPU and flags or GPU, provider); exit 1 when not.
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
    if not run:
        return
    from kdtool.engines.registry import run_bundle_self_test

    result = run_bundle_self_test(bundle, device=device, threads=threads, require_signature=key)
    click.echo(json.dumps(result.to_dict(), indent=2) if json_out else result.line())
    if not result.passed:
        click.get_current_context().exit(1)
