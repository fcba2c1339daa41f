"""OpenSSF Model Signing (OMS) of a bundle, through its reference library (``model-signing``).

The signature is the standard one: a Sigstore bundle holding a DSSE envelope whose in-toto statement
lists the sha256 of every file of the model directory, signed by an EC key (P-256/384/521) the user
holds. It lives inside the bundle as ``model.sig`` (the library's default name), so a bundle stays one
self-contained directory; the manifest's checksum rules allow it beside ``manifest.json``
(``UNLISTED_OK``), and the signature covers ``manifest.json`` and every file the manifest lists, but
not the signatures themselves nor the ``.kdtool`` marker (recorded as the statement's
``ignore_paths``, so ``model_signing verify`` skips them too).

What is signed and checked is what kdtool holds in memory, never a path read a second time: both
:func:`sign_files` and :func:`check_signature` hand the library a private copy (``$TMPDIR``, 0700,
removed at once) of the bytes :mod:`kdtool.bundle.verified` read and hashed, the bytes the loaders
then use. After the library accepts a signature, :func:`check_signature` also requires every file
kdtool loads to be among the signed ones (a signer may have told the library to ignore some).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
from pathlib import Path, PurePosixPath

from kdtool.atomic import scratch_dir
from kdtool.errors import EnvironmentUnsupported, IntegrityError

SIGNATURE = "model.sig"
IGNORED = (".kdtool", "manifest.sig", SIGNATURE)  # never covered: the marker and the signatures
MAX_SIGNATURE_BYTES = 16 << 20


def _library():
    try:
        import model_signing.hashing
        import model_signing.signing
        import model_signing.verifying
    except ImportError as err:
        raise EnvironmentUnsupported(f"OpenSSF Model Signing needs the model-signing and pyopenssl packages ({err}); "
                                     "pip install model-signing pyopenssl") from None
    return model_signing


def _copy(files: dict[str, bytes], into: Path) -> Path:
    for rel, data in files.items():
        dest = into.joinpath(*PurePosixPath(rel).parts)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    return into


def _name(root) -> str:
    """The model's name in the statement (informative only): the bundle directory's name."""
    return Path(os.path.abspath(root)).name or "bundle"


def sign_files(root, files: dict[str, bytes], private_key) -> bytes:
    """The OMS signature (``model.sig``'s bytes) of ``files`` ({relative path: bytes}) by the EC key file."""
    library = _library()
    hashing = library.hashing.Config().set_ignored_paths(paths=list(IGNORED), ignore_git_paths=False)
    with scratch_dir("sign") as tmp:
        model = _copy(files, tmp / _name(root))
        library.signing.Config().use_elliptic_key_signer(private_key=Path(private_key)) \
            .set_hashing_config(hashing).sign(model, tmp / SIGNATURE)
        return (tmp / SIGNATURE).read_bytes()


def signed_names(signature: bytes) -> set[str]:
    """The file names the (already verified) statement in ``signature`` lists."""
    bundle = json.loads(signature)
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    predicate = statement.get("predicate") or {}
    if "resources" in predicate:
        shards = (predicate.get("serialization") or {}).get("method") == "shards"
        return {r["name"].rsplit(":", 2)[0] if shards else r["name"] for r in predicate["resources"]}
    return {s["name"] for s in statement["subject"]}  # the pre-1.0 statement: one subject per file


def check_signature(root, signature: bytes, files: dict[str, bytes], required, public_key_pem: bytes, key_path) -> None:
    """IntegrityError unless ``signature`` is a valid OMS signature, by the EC key ``public_key_pem``, of
    exactly ``files`` (every file the bundle holds but the signature) and covers every name in ``required``."""
    library = _library()
    with scratch_dir("verify") as tmp:
        model = _copy(files, tmp / _name(root))
        (tmp / SIGNATURE).write_bytes(signature)
        (tmp / "key.pub").write_bytes(public_key_pem)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the library prints notes on old signature formats
                library.verifying.Config().use_elliptic_key_verifier(public_key=tmp / "key.pub").verify(
                    model, tmp / SIGNATURE)
        except Exception as err:  # the library raises ValueError, cryptography's InvalidSignature, parse errors
            reason = " ".join(str(err).split())[:160] or type(err).__name__
            raise IntegrityError(f"bundle {root}: the signature does not match {key_path} ({SIGNATURE}: {reason}); "
                                 "the bundle was changed after signing or another key signed it, refusing to load "
                                 "it") from None
    try:
        covered = signed_names(signature)
    except (ValueError, KeyError, TypeError):
        raise IntegrityError(f"bundle {root}: {SIGNATURE} holds no readable statement; sign the bundle again") from None
    unsigned = sorted(set(required) - covered)
    if unsigned:
        raise IntegrityError(f"bundle {root}: {unsigned[0]} is not covered by {SIGNATURE} ({len(unsigned)} file(s) the "
                             "signer left out); sign the whole bundle, refusing to load it")
