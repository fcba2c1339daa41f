"""Signing keys and signature checks of bundles: OpenSSF Model Signing with EC keys, Ed25519 deprecated.

Signatures are OpenSSF Model Signing (:mod:`kdtool.bundle.oms`, through the ``model-signing``
library): ``kdtool keygen`` writes an EC key pair (P-256 by default; P-384 and P-521 too: the format's
own-key signing takes these, not Ed25519), ``export --sign-key KEY`` writes ``model.sig`` into the
bundle, and ``--require-signature PUB`` / ``kdtool verify --public-key PUB`` check it. The same files
work with the library's own CLI (``model_signing sign key`` / ``verify key``) in both directions.

Bundles signed the way kdtool did before (an Ed25519 signature of ``manifest.json``'s bytes in
``manifest.sig``) keep verifying with their Ed25519 public key, with one line saying the format is
deprecated; kdtool no longer signs in it.

Rollback: a bundle's version is its export time (the manifest's ``created``, UTC, to the second).
The signature covers ``manifest.json``, so the version is signed; ``--min-version T`` refuses a
bundle exported before ``T`` (an older signed bundle copied over a newer one). An export time
needs no counter kept beside the key (a serial would have to survive, and agree, on every machine
that signs) and orders bundles signed by different keys and machines alike.

Keys are PEM files in OpenSSL's formats (``openssl ecparam -name prime256v1 -genkey`` then
``openssl pkcs8 -topk8 -nocrypt``; ``openssl ec -pubout``); ``kdtool keygen`` creates the pair
atomically: both files or neither, and never over an existing name (see :func:`generate_keypair`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from kdtool.errors import EnvironmentUnsupported, InputError, IntegrityError, require_file
from kdtool.paths import check_outputs_apart

LEGACY_SIGNATURE = "manifest.sig"  # Ed25519 over manifest.json's bytes: verified, deprecated, no longer written
MAX_KEY_BYTES = 64 << 10
CURVES = ("P-256", "P-384", "P-521")
LOG = logging.getLogger("kdtool.bundle.signing")
_warned: set = set()


def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    except ImportError:  # pragma: no cover - a dependency of kdtool
        raise EnvironmentUnsupported("signed bundles need the 'cryptography' package; pip install cryptography") from None
    return serialization, ec, ed25519


def _curve(ec, name: str):
    return {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}[name]()


def _supported_ec(key, ec) -> bool:
    return isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) and \
        key.curve.name in ("secp256r1", "secp384r1", "secp521r1")


def check_signing_key(path) -> Path:
    """``path`` if it holds an unencrypted PEM EC private key OpenSSF Model Signing takes; InputError otherwise."""
    serialization, ec, ed25519 = _crypto()
    data = require_file(path, "signing key", max_bytes=MAX_KEY_BYTES).read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        raise InputError(f"signing key {path} is not an unencrypted PEM private key ({str(err)[:80]}); "
                         "make one with kdtool keygen") from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raise InputError(f"signing key {path} is an Ed25519 key, whose manifest.sig format is deprecated; bundles are "
                         "now signed with OpenSSF Model Signing: make an EC key with kdtool keygen")
    if not _supported_ec(key, ec):
        raise InputError(f"signing key {path} is a {type(key).__name__}; OpenSSF Model Signing takes EC P-256, P-384 "
                         "or P-521 keys (kdtool keygen)")
    return Path(path)


def load_public_key(path):
    """``(key, pem bytes)`` of the EC or (deprecated) Ed25519 public key in PEM file ``path``."""
    serialization, ec, ed25519 = _crypto()
    data = require_file(path, "public key", max_bytes=MAX_KEY_BYTES).read_bytes()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as err:
        raise InputError(f"public key {path} is not a PEM public key ({str(err)[:80]}); "
                         "give the .pub file kdtool keygen wrote") from None
    if not (_supported_ec(key, ec) or isinstance(key, ed25519.Ed25519PublicKey)):
        raise InputError(f"public key {path} is a {type(key).__name__}; give an EC P-256/384/521 key (or a "
                         "deprecated Ed25519 one)")
    return key, data


def is_legacy(key) -> bool:
    """Whether ``key`` checks the deprecated Ed25519 ``manifest.sig``."""
    _, _, ed25519 = _crypto()
    return isinstance(key, ed25519.Ed25519PublicKey)


def check_legacy_signature(bundle_dir, manifest_bytes: bytes, signature: bytes | None, key, public_key_path) -> None:
    """IntegrityError unless ``signature`` (``manifest.sig``'s bytes) is ``key``'s Ed25519 signature of the manifest."""
    from cryptography.exceptions import InvalidSignature

    root = Path(bundle_dir)
    if signature is None:
        raise IntegrityError(f"bundle {root} is not signed (no {LEGACY_SIGNATURE}); it must be signed by "
                             f"{public_key_path} (kdtool export --sign-key)")
    try:
        key.verify(signature, manifest_bytes)
    except InvalidSignature:
        raise IntegrityError(f"bundle {root}: the signature does not match {public_key_path}; the manifest was changed "
                             "after signing or another key signed it, refusing to load it") from None
    if (str(root), str(public_key_path)) not in _warned:
        _warned.add((str(root), str(public_key_path)))
        LOG.warning(f"bundle {root} is signed in the deprecated Ed25519 format ({LEGACY_SIGNATURE}); re-sign it with "
                    "an EC key (kdtool keygen; kdtool export --sign-key) for OpenSSF Model Signing")


class SignatureRequirement(str):
    """``--require-signature PUB --min-version T``: the public key file (this string, so it goes wherever a
    key path goes) and the oldest bundle version accepted (None: any)."""

    min_version: datetime | None

    def __new__(cls, public_key, min_version: datetime | None = None):
        requirement = super().__new__(cls, os.fspath(public_key))
        requirement.min_version = min_version
        return requirement


def parse_version(text: str, what: str = "--min-version") -> datetime:
    """A bundle version: an export time in UTC, ``2026-03-01`` or ``2026-03-01T12:00:00Z``."""
    try:
        moment = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{what} {str(text)[:40]!r} is not a date or time; give e.g. 2026-03-01T12:00:00Z (a "
                         "bundle's version is its export time, kdtool verify prints it)") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def bundle_version(manifest: dict) -> datetime | None:
    """The bundle's version (its export time, the manifest's ``created``), or None when it has none."""
    created = manifest.get("created")
    try:
        return parse_version(created, "created") if isinstance(created, str) else None
    except InputError:
        return None


def check_min_version(bundle_dir, manifest: dict, min_version: datetime | None) -> None:
    """IntegrityError when the (signed) bundle is older than ``min_version``: a rollback."""
    if min_version is None:
        return
    version = bundle_version(manifest)
    if version is None:
        raise IntegrityError(f"bundle {bundle_dir} carries no export time (created) in its signed manifest, so "
                             "--min-version cannot be checked; export it again")
    if version < min_version:
        raise IntegrityError(f"bundle {bundle_dir} is version {version:%Y-%m-%dT%H:%M:%SZ}, older than --min-version "
                             f"{min_version:%Y-%m-%dT%H:%M:%SZ}: a rolled-back bundle, refusing to load it")


def generate_keypair(private_path, public_path, curve: str = "P-256") -> None:
    """Write a new EC key pair (PEM): the private key readable by its owner only (0600), the public key beside."""
    serialization, ec, _ = _crypto()
    if curve not in CURVES:
        raise InputError(f"curve {curve!r} is not one of {', '.join(CURVES)}")
    check_outputs_apart({}, {"private key": private_path, "public key": public_path})
    key = ec.generate_private_key(_curve(ec, curve))
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    umask = os.umask(0)
    os.umask(umask)
    create_all([(Path(private_path), private, 0o600), (Path(public_path), public, 0o644 & ~umask)])


def _exists(path: Path) -> InputError:
    return InputError(f"{path} already exists; kdtool keygen never replaces a key, choose another path")


def create_all(files: list[tuple[Path, bytes, int]]) -> None:
    """Create every ``(path, bytes, mode)`` or none of them, never over an existing name.

    Each file is written in full (and fsync'd) under a private temporary name beside its destination,
    then hard-linked into place: ``link(2)`` fails when the name exists, as ``O_EXCL`` does, so of two
    runs racing for the same names one wins each name and a reader never sees a partial file. When a
    later name is taken, the names this run already linked are removed again (checked by inode: only
    what this run created), so the pair on disk is always whole and matching.
    """
    temps, placed = [], []
    try:
        for path, data, mode in files:
            if path.exists() or path.is_symlink():
                raise _exists(path)
            if not path.parent.is_dir():
                raise InputError(f"directory {path.parent} does not exist; create it first")
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".partial", dir=path.parent)
            temps.append(tmp)
            with os.fdopen(fd, "wb") as fh:
                os.fchmod(fh.fileno(), mode)
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        for (path, _, _), tmp in zip(files, temps, strict=True):
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise _exists(path) from None
            placed.append((path, os.stat(tmp).st_ino))
    except BaseException:
        for path, inode in placed:
            with contextlib.suppress(OSError):
                if os.lstat(path).st_ino == inode:
                    os.unlink(path)
        raise
    finally:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
