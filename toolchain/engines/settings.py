"""The settings of opening a model, one declaration each for every config that opens one (answer, validate, serve,
profile, export): the device, threads, remote code, the signature a bundle must carry and the device checks.

Each function returns a :func:`kdtool.fields.setting` (default, help and option in one place); a config
declares ``device: str = device_setting("auto, cpu or cuda[:N].")``. The ``help`` argument is what differs
between commands: who may run code, what the device names are.
"""

from __future__ import annotations

from typing import Any

from kdtool.fields import setting


def device_setting(help: str = "auto, cpu, cuda or tensorrt (bundles).") -> Any:
    return setting("auto", help=help)


def threads_setting(help: str = "CPU threads for the engine [default: all, or the bundle profile's].", **more) -> Any:
    """``--threads``: from 1 to the CPUs this process may run on (``--threads 100000`` once got it killed)."""
    return setting(None, type="threads", help=help, **more)


def trust_remote_code_setting(who: str = "a model directory", own: str = "its") -> Any:
    return setting(False, help=f"Let {who} run {own} own Python code (auto_map). Only for code you have read.")


def require_signature_setting() -> Any:
    """``--require-signature PUB`` (and ``--min-version``): the public key every bundle must be signed with."""
    return setting(None, type="signature", metavar="PUB",
                   help="Refuse any bundle (among the models) not signed by the public key in PUB: an EC key checks the "
                        "OpenSSF Model Signing model.sig (kdtool keygen, export --sign-key), an Ed25519 key the "
                        "deprecated manifest.sig.")


def self_test_setting() -> Any:
    return setting(True, off="--no-self-test",
                   help="Skip the bundle's self-test (its golden windows through this engine, against the logits they "
                        "gave where it was certified), which runs when a bundle opens.")


def strict_setting() -> Any:
    return setting(False, help="Refuse instead of warning: a bundle exported for another INT8 arithmetic class than "
                               "this device's, one that carries no self-test, and (with --require-signature) model "
                               "directories, which carry no signature.")
