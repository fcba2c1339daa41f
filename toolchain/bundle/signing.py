"""Signed bundles: an Ed25519 signature over the exact bytes of ``manifest.json``.

The manifest's sha256 table protects against accidents; someone who can rewrite the manifest can
rewrite the table too. A signature by a key the user holds closes that: ``kdtool export
--sign-key KEY`` writes ``manifest.sig`` (the 64 raw signature bytes) next to the manifest, and
``--require-signature PUB`` refuses a bundle whose manifest does not carry a valid signature by
PUB. Since the manifest lists the sha256 of every member and :mod:`kdtool.bundle.verified` loads
only bytes that match it, the signature covers the whole bundle.

Keys are PEM files, the formats OpenSSL writes (``openssl genpkey -algorithm ed25519 -out key.pem``;
``openssl pkey -in key.pem -pubout -out key.pub``), or ``kdtool keygen``. The library is
``cryptography`` (pyca), whose Ed25519 is OpenSSL's.
"""

from __future__ import annotations

import os
from pathlib import Path

from kdtool.atomic import atomic_write_bytes
from kdtool.errors import EnvironmentUnsupported, InputError, IntegrityError, require_file
from kdtool.paths import check_outputs_apart

SIGNATURE = "manifest.sig"
MAX_KEY_BYTES = 64 << 10


def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:  # pragma: no cover - a dependency of kdtool
        raise EnvironmentUnsupported("signed bundles need the 'cryptography' package; pip install cryptography") from None
    return serialization, ed25519


def _read_key(path, what: str) -> bytes:

    return require_file(path, what, max_bytes=MAX_KEY_BYTES).read_bytes()


def load_private_key(path):
    """The Ed25519 private key in PEM file ``path`` (unencrypted PKCS#8, as openssl genpkey writes it)."""
    serialization, ed25519 = _crypto()
    try:
        key = serialization.load_pem_private_key(_read_key(path, "signing key"), password=None)
    except (ValueError, TypeError) as err:
        raise InputError(f"signing key {path} is not an unencrypted PEM private key ({str(err)[:80]}); "
                         "make one with kdtool keygen") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise InputError(f"signing key {path} is a {type(key).__name__}, not an Ed25519 key; make one with kdtool keygen")
    return key


def load_public_key(path):
    """The Ed25519 public key in PEM file ``path`` (SubjectPublicKeyInfo, as openssl pkey -pubout writes it)."""
    serialization, ed25519 = _crypto()
    try:
        key = serialization.load_pem_public_key(_read_key(path, "public key"))
    except (ValueError, TypeError) as err:
        raise InputError(f"public key {path} is not a PEM public key ({str(err)[:80]}); "
                         "give the .pub file kdtool keygen wrote") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise InputError(f"public key {path} is a {type(key).__name__}, not an Ed25519 key")
    return key


def generate_keypair(private_path, public_path) -> None:
    """Write a new Ed25519 key pair: the private key readable by its owner only (0600)."""

    serialization, ed25519 = _crypto()
    check_outputs_apart({}, {"private key": private_path, "public key": public_path})
    for p in (private_path, public_path):
        if Path(p).exists():
            raise InputError(f"{p} already exists; kdtool keygen never replaces a key, choose another path")
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    old = os.umask(0o077)
    try:
        atomic_write_bytes(Path(private_path), private)
    finally:
        os.umask(old)
    atomic_write_bytes(Path(public_path), public)


def check_signature(bundle_dir, manifest_bytes: bytes, signature: bytes | None, public_key_path) -> None:
    """IntegrityError unless ``signature`` (``manifest.sig``'s bytes, None when absent) is a valid signature
    of ``manifest_bytes`` by ``public_key_path``. Reading the bundle is :mod:`kdtool.bundle.verified`'s job."""
    from cryptography.exceptions import InvalidSignature

    key = load_public_key(public_key_path)
    root = Path(bundle_dir)
    if signature is None:
        raise IntegrityError(f"bundle {root} is not signed (no {SIGNATURE}); it must be signed by {public_key_path} "
                             "(kdtool export --sign-key)")
    try:
        key.verify(signature, manifest_bytes)
    except InvalidSignature:
        raise IntegrityError(f"bundle {root}: the signature does not match {public_key_path}; the manifest was changed "
                             "after signing or another key signed it, refusing to load it") from None
