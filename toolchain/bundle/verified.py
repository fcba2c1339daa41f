"""Open a bundle so that the bytes that were verified are the bytes that are loaded.

:func:`kdtool.bundle.manifest.verify_bundle` hashes files by path; a loader that opened the path
again could read a file swapped in between (time of check vs time of use). Here every member is
opened once (``O_NOFOLLOW``, regular files only), read into memory, hashed and kept: ONNX Runtime
gets the graph as bytes (``InferenceSession(bytes)``), TensorRT the engine as bytes, and the
tokenizer and ``config.json`` are loaded from a private copy of their verified bytes
(``$TMPDIR/kdtool-verified-PID-*``, mode 0700, removed as soon as they are loaded). A graph with
external data is opened from such a private copy too.

The manifest itself is read once as bytes, the schema (:mod:`kdtool.bundle.manifest_schema`) is
checked on what they parse to. A signature is checked on the same bytes that are kept: the OpenSSF
Model Signing ``model.sig`` (:mod:`kdtool.bundle.oms`) over the manifest and every member as read
here, or the deprecated Ed25519 ``manifest.sig`` (:mod:`kdtool.bundle.signing`) over the manifest's
bytes; then the bundle's version against ``--min-version``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kdtool import stamps
from kdtool.atomic import atomic_write_bytes, scratch_dir
from kdtool.bundle import manifest as B
from kdtool.bundle import oms
from kdtool.bundle.manifest_schema import check_manifest
from kdtool.bundle.signing import (
    LEGACY_SIGNATURE,
    check_legacy_signature,
    check_min_version,
    check_signing_key,
    is_legacy,
    load_public_key,
)
from kdtool.errors import InputError, IntegrityError

MAX_MANIFEST_BYTES = 16 << 20


def read_member(root: Path, rel: str, limit: int | None = None) -> bytes:
    """The bytes of bundle member ``rel``, opened once without following a symlink; IntegrityError otherwise."""
    path = B.resolve_member(root, rel)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise IntegrityError(f"bundle {root}: {rel} listed in {B.MANIFEST} is missing; export the bundle again") from None
    except OSError as err:
        raise IntegrityError(f"bundle {root}: {rel} cannot be opened ({err.strerror}); refusing to load it") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise IntegrityError(f"bundle {root}: {rel} is not a regular file; refusing to load it")
        if limit is not None and st.st_size > limit:
            raise IntegrityError(f"bundle {root}: {rel} is {st.st_size} bytes, more than a {rel} can be")
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read() if limit is None else fh.read(limit + 1)  # a file growing as it is read cannot exhaust memory
    finally:
        os.close(fd)


@dataclass
class VerifiedBundle:
    """A bundle's manifest and the verified bytes of every member, held in memory."""

    root: Path
    manifest: dict
    manifest_bytes: bytes
    data: dict[str, bytes]
    signed_by: str | None = None  # the public key file whose signature was checked, if any

    def member(self, rel: str) -> bytes:
        return self.data[rel]

    def has_external_data(self, rel: str) -> bool:
        return bool(_external_members(self.root, rel, self.data[rel], self.manifest["files"]))

    @contextlib.contextmanager
    def private_copy(self, rels) -> Iterator[Path]:
        """A private directory holding the verified bytes of ``rels`` (for loaders that only take paths)."""

        with scratch_dir("verified") as tmp:
            for rel in rels:
                dest = tmp.joinpath(*PurePosixPath(rel).parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(self.data[rel])
            yield tmp

    def tokenizer_files(self) -> list[str]:
        """Every member a tokenizer or model config may read: all but graphs, engines and their data."""
        heavy = {self.manifest.get(k) for k in ("model", "trt_onnx", "engine", "timing_cache")}
        graphs = [r for r in self.data if r.endswith(".onnx")]
        external = set()
        for g in graphs:
            external |= _external_members(self.root, g, self.data[g], self.manifest["files"])
        return [r for r in self.data if r not in heavy and r not in external and not r.endswith(".onnx")]


def _external_members(root: Path, rel: str, graph: bytes, files) -> set[str]:
    """The members ONNX graph ``rel`` reads external data from; IntegrityError for any outside the bundle."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors

    try:
        model = onnx.load_model_from_string(graph)
    except Exception as err:  # protobuf raises its own DecodeError
        raise IntegrityError(f"bundle {root}: {rel} is not a readable ONNX graph ({type(err).__name__}); "
                             "export the bundle again") from None
    base = PurePosixPath(rel).parent
    members = set()
    for tensor in _get_all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        member = str(base / location) if str(base) != "." else location
        B.resolve_member(root, member)
        if member not in files:
            raise IntegrityError(f"bundle {root}: {rel} reads external data from {location!r}, which the bundle "
                                 f"does not list; refusing to load it")
        members.add(member)
    return members


def _extras(root: Path, skip: str) -> dict[str, bytes]:
    """The small files allowed beside the manifest (marker, other signature) that are present, read once."""
    extras = {}
    for rel in sorted(B.UNLISTED_OK - {B.MANIFEST, skip}):
        if (root / rel).exists() or (root / rel).is_symlink():
            extras[rel] = read_member(root, rel, 1 << 20)
    return extras


def check_bundle_signature(bundle: VerifiedBundle, public_key) -> None:
    """The signature of ``bundle`` (already read and checksummed) by ``public_key``, on the bytes held in memory;
    then ``public_key.min_version`` (a :class:`~kdtool.bundle.signing.SignatureRequirement`) against its version."""
    key, pem = load_public_key(public_key)
    root = bundle.root
    if is_legacy(key):
        signature = read_member(root, LEGACY_SIGNATURE, 1024) if (root / LEGACY_SIGNATURE).exists() else None
        check_legacy_signature(root, bundle.manifest_bytes, signature, key, public_key)
    else:
        if not (root / oms.SIGNATURE).exists():
            raise IntegrityError(f"bundle {root} is not signed (no {oms.SIGNATURE}); it must be signed by {public_key} "
                                 f"(kdtool export --sign-key, or model_signing sign key {root} --signature "
                                 f"{root}/{oms.SIGNATURE})")
        signature = read_member(root, oms.SIGNATURE, oms.MAX_SIGNATURE_BYTES)
        files = {B.MANIFEST: bundle.manifest_bytes, **bundle.data, **_extras(root, oms.SIGNATURE)}
        oms.check_signature(root, signature, files, [B.MANIFEST, *bundle.data], pem, public_key)
    check_min_version(root, bundle.manifest, getattr(public_key, "min_version", None))
    bundle.signed_by = str(public_key)


def open_verified_bundle(root, public_key=None) -> VerifiedBundle:
    """Read, check and keep every file of the bundle at ``root``; with ``public_key``, its signature too.

    Nothing is read twice: the checks (schema, sizes, sha256, no unlisted file, external data inside the
    bundle, signature, version) apply to the bytes returned. ``public_key``: a path, or a
    :class:`~kdtool.bundle.signing.SignatureRequirement` that also carries ``--min-version``.
    """

    root = Path(root)
    if not (root / B.MANIFEST).is_file() or (root / B.MANIFEST).is_symlink():
        raise InputError(f"{root} is not a kdtool bundle (no {B.MANIFEST}); create one with kdtool export")
    if public_key is not None:
        load_public_key(public_key)  # a bad key file is bad input before the bundle is read
    manifest_bytes = read_member(root, B.MANIFEST, MAX_MANIFEST_BYTES)
    try:
        manifest = json.loads(manifest_bytes.decode("utf-8"), object_pairs_hook=B.unique_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise IntegrityError(f"{root / B.MANIFEST} is not valid JSON ({type(err).__name__}); "
                             "the bundle is damaged, export it again") from None
    check_manifest(manifest, root / B.MANIFEST)
    files = manifest["files"]
    data = {}
    for rel, meta in files.items():
        blob = read_member(root, rel, meta["bytes"])
        if len(blob) != meta["bytes"] or hashlib.sha256(blob).hexdigest() != meta["sha256"]:
            raise IntegrityError(f"bundle {root}: {rel} was altered (sha256 does not match {B.MANIFEST}); "
                                 "export the bundle again")
        data[rel] = blob
    B.check_listing(root, manifest)
    for rel in files:
        if rel.endswith(".onnx"):
            _external_members(root, rel, data[rel], files)
    bundle = VerifiedBundle(root, manifest, manifest_bytes, data)
    if public_key is not None:
        check_bundle_signature(bundle, public_key)
    return bundle


def check_tokenizer_fits(tokenizer, config: dict, where) -> None:
    """Refuse a tokenizer whose ids the model cannot embed, before ONNX Runtime sees a single id.

    A vocabulary larger than the embedding table, or a special token (CLS, SEP, PAD ...) whose id
    is beyond it, would index out of range: ORT logs its own error, or worse, a graph gathers
    garbage. The manifest's checksums cannot catch a consistent but mismatched pair.
    """
    vocab = config.get("vocab_size")
    if not isinstance(vocab, int) or isinstance(vocab, bool) or vocab <= 0:
        raise IntegrityError(f"{where}: config.json has no valid vocab_size; export the bundle again")
    size = len(tokenizer)
    if size > vocab:
        raise IntegrityError(f"{where}: the tokenizer has {size} tokens but the model embeds only {vocab}; "
                             "the tokenizer does not belong to this model, export the bundle again")
    bad = sorted({i for i in tokenizer.all_special_ids if not (0 <= int(i) < vocab)})
    if bad:
        raise IntegrityError(f"{where}: special token id {bad[0]} does not fit the model's {vocab} embeddings; "
                             "the tokenizer does not belong to this model, export the bundle again")


def sign_bundle(bundle_dir, key) -> Path:
    """Sign the (already written) bundle with the EC private key file ``key``: ``model.sig``, OpenSSF Model Signing.

    Only what verifies is signed, and the bytes signed are those verified (a private copy, never the paths again).
    """
    key = check_signing_key(key)
    bundle = open_verified_bundle(bundle_dir)
    signature = oms.sign_files(bundle.root, {B.MANIFEST: bundle.manifest_bytes, **bundle.data}, key)
    path = Path(bundle_dir) / oms.SIGNATURE
    atomic_write_bytes(path, signature)
    stamps.add_to_stamp(bundle_dir, oms.SIGNATURE)  # still exactly kdtool's output: --overwrite may replace it
    return path


def verify_signed_bundle(bundle_dir, public_key_path) -> dict:
    """The check ``--require-signature`` makes: signature by ``public_key_path`` and every checksum; the manifest.

    For callers outside the engine loaders (``kdtool verify``, a server checking at startup).
    """
    return open_verified_bundle(bundle_dir, public_key=public_key_path).manifest
