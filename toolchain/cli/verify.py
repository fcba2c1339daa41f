"""``kdtool verify``: check a bundle's checksums, schema and (with --public-key) its signature; ``--run`` its self-test."""

from __future__ import annotations

import json

import click

from kdtool.cli.options import threads_option


@click.command("verify")
@click.argument("bundle", type=click.Path())
@click.option("--public-key", type=click.Path(dir_okay=False), default=None, metavar="PUB",
              help="Also require a valid Ed25519 signature of the manifest by this public key.")
@click.option("--run", "run", is_flag=True,
              help="Also run the bundle's self-test here: its golden windows through the engine `kdtool answer` would "
                   "use, against the logits they gave where the bundle was certified. Exit 1 when it fails.")
@click.option("--device", default="auto", show_default=True, help="With --run: auto, cpu, cuda[:N] or tensorrt.")
@threads_option()
@click.option("--json", "json_out", is_flag=True, help="With --run: print the self-test result as JSON.")
def command(bundle, public_key, run, device, threads, json_out):
    """Verify BUNDLE: every file against manifest.json, the manifest's schema, and the signature.

    Exit 0 and one line when everything holds; one error line and exit 2 otherwise. With --run, a second line
    says whether this device computes what the bundle was certified with (max |logit diff|, argmax agreement,
    CPU and flags or GPU, provider); exit 1 when it does not.
    """
    from kdtool.bundle.verified import open_verified_bundle

    verified = open_verified_bundle(bundle, public_key=public_key)
    signed = f", signed by {public_key}" if public_key else ""
    click.echo(f"bundle {bundle}: {len(verified.data)} files verified{signed}")
    if not run:
        return
    from kdtool.engines.registry import run_bundle_self_test

    result = run_bundle_self_test(bundle, device=device, threads=threads, require_signature=public_key)
    click.echo(json.dumps(result.to_dict(), indent=2) if json_out else result.line())
    if not result.passed:
        click.get_current_context().exit(1)
