"""The bundle format: a directory of model files described by ``manifest.json``.

A bundle holds the ONNX graph(s), optionally a TensorRT engine and its timing cache, the
tokenizer, the model ``config.json`` and ``manifest.json``. The manifest records how the bundle
was made (kdtool version, source model digest, precision, opset, inputs and outputs, parity and
fusion figures, device profile, TensorRT version) and the sha256 and size of every file.

Trust rules, applied by :func:`verify_bundle` before anything in the bundle is deserialized:
every listed file exists, is a regular file inside the bundle (no ``..``, no absolute path, no
symlink) and has the recorded digest; no file is present that the manifest does not list (the
``.kdtool`` marker of :mod:`kdtool.atomic` aside); and every external-data file an ONNX graph
names (read with ``load_external_data=False`` once its digest checks out) is itself a listed
member, so neither ONNX Runtime nor the TensorRT parser is ever pointed at a file outside.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path, PurePosixPath

from kdtool import __version__
from kdtool.atomic import MARKER
from kdtool.errors import InputError, IntegrityError

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
UNLISTED_OK = {MANIFEST, MARKER, "manifest.sig", "model.sig"}  # the signatures: kdtool.bundle.signing, .oms
WEIGHT_GLOBS = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json", "pytorch_model.bin.index.json")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def source_digest(model_dir: Path) -> str:
    """One sha256 over the weight files of a Hugging Face directory (names and contents, sorted)."""
    h = hashlib.sha256()
    files = sorted({p for g in WEIGHT_GLOBS for p in Path(model_dir).glob(g) if p.is_file()})
    for p in files:
        h.update(p.name.encode() + b"\0" + sha256_file(p).encode() + b"\n")
    return h.hexdigest()


def _bundle_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if (p.is_file() or p.is_symlink()) and p.relative_to(root).as_posix() not in UNLISTED_OK)


def file_table(root: Path) -> dict[str, dict]:
    """``{relpath: {sha256, bytes}}`` for every file under ``root`` except the manifest and marker."""
    root = Path(root)
    table = {}
    for rel in _bundle_files(root):
        p = root / rel
        if p.is_symlink():
            raise InputError(f"{p} is a symlink; a bundle holds regular files only")
        table[rel] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
    return table


def new_manifest(**fields) -> dict:
    """A manifest skeleton with the fields every bundle has; callers add the rest."""
    return {"schema_version": SCHEMA_VERSION, "kdtool_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "task": "question-answering", **fields}


def write_manifest(root: Path, manifest: dict) -> dict:
    """Record every file of ``root`` in ``manifest`` and write ``manifest.json`` (last, inside an atomic dir)."""
    root = Path(root)
    manifest = dict(manifest, files=file_table(root))
    for key in ("model", "trt_onnx", "engine", "timing_cache"):
        rel = manifest.get(key)
        if rel is not None and rel not in manifest["files"]:
            raise ValueError(f"manifest names {key}={rel!r} but the bundle has no such file")
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def unique_keys(pairs: list) -> dict:
    """``json.loads`` hook: an object naming one key twice is damaged (the second would silently win)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise IntegrityError(f"{MANIFEST} names {str(dup)[:60]!r} twice; the manifest is damaged, export the bundle again")
    return out


def check_member_names(files: dict, where) -> None:
    """Every name in the file table is a canonical relative path (``a/b``: no ``.``, ``..``, ``//``, ``\\``,
    NUL or leading ``/``), so no file can be listed under two spellings or outside the bundle."""
    for rel in files:
        pure = PurePosixPath(rel) if rel and "\0" not in rel and "\\" not in rel and len(rel) <= 4096 else None
        if pure is not None and (pure.is_absolute() or ".." in pure.parts):
            raise IntegrityError(f"{where}: manifest path {rel[:60]!r} leaves the bundle; refusing to load it")
        if pure is None or pure.as_posix() != rel or "." in pure.parts:
            raise IntegrityError(f"{where}: file name {rel[:60]!r} is not a canonical relative path (one spelling per "
                                 "file, no '.', '..', '//', backslash or NUL); the manifest is damaged, export the "
                                 "bundle again")


def read_manifest(root: Path) -> dict:
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file() or path.is_symlink():
        raise InputError(f"{root} is not a kdtool bundle (no {MANIFEST}); create one with kdtool export")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=unique_keys)
    except (ValueError, RecursionError) as err:  # not UTF-8, not JSON, an integer of over 4300 digits
        raise IntegrityError(f"{path} is not valid JSON ({err}); the bundle is damaged, export it again") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise IntegrityError(f"{path} has no file table; the bundle is damaged, export it again")
    check_member_names(manifest["files"], path)
    version = manifest.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise InputError(f"{path}: bundle schema {version!r} is newer than this kdtool understands "
                         f"({SCHEMA_VERSION}); upgrade kdtool")
    return manifest


def resolve_member(root: Path, rel: str) -> Path:
    """``root/rel`` if ``rel`` names a regular file inside ``root``; IntegrityError otherwise."""
    root = Path(root).resolve()
    pure = PurePosixPath(rel) if isinstance(rel, str) else None
    if pure is None or not rel or pure.is_absolute() or "\\" in rel or any(part in ("..", "") for part in pure.parts):
        raise IntegrityError(f"bundle {root}: manifest path {rel!r} leaves the bundle; refusing to load it")
    path = root.joinpath(*pure.parts)
    cur = root
    for part in pure.parts:
        cur = cur / part
        if cur.is_symlink():
            raise IntegrityError(f"bundle {root}: {rel} is a symlink; refusing to load it (re-export the bundle)")
    if root not in path.resolve().parents:
        raise IntegrityError(f"bundle {root}: manifest path {rel!r} leaves the bundle; refusing to load it")
    return path


def check_listing(root: Path, manifest: dict) -> None:
    """No file in the bundle that the manifest does not list, and every file it names is listed
    (shared by this path-based check and the loaders' :func:`kdtool.bundle.verified.open_verified_bundle`)."""
    files = manifest["files"]
    extra = sorted(set(_bundle_files(root)) - set(files))
    if extra:
        raise IntegrityError(f"bundle {root}: {extra[0]} is not listed in {MANIFEST} "
                             f"({len(extra)} unlisted file(s)); remove it or export the bundle again")
    for key in ("model", "trt_onnx", "engine", "timing_cache"):
        rel = manifest.get(key)
        if rel is not None and rel not in files:
            raise IntegrityError(f"bundle {root}: {MANIFEST} names {key} {rel!r} but does not list it; export again")


def verify_bundle(root) -> dict:
    """Check every file of a bundle against its manifest; return the manifest. Reads no model."""
    root = Path(root)
    manifest = read_manifest(root)
    files = manifest["files"]
    for rel, meta in files.items():
        path = resolve_member(root, rel)
        if not path.is_file():
            raise IntegrityError(f"bundle {root}: {rel} listed in {MANIFEST} is missing; export the bundle again")
        if not isinstance(meta, dict) or meta.get("bytes") != path.stat().st_size or meta.get("sha256") != sha256_file(path):
            raise IntegrityError(f"bundle {root}: {rel} was altered (sha256 does not match {MANIFEST}); "
                                 "export the bundle again")
    check_listing(root, manifest)
    if manifest.get("model") is None:
        raise IntegrityError(f"bundle {root}: {MANIFEST} names no model file; export the bundle again")
    for rel in files:
        if rel.endswith(".onnx"):
            check_external_data(root, rel, files)
    return manifest


def check_external_data(root: Path, rel: str, files) -> None:
    """Every external-data location of the (already verified) ONNX graph ``rel`` is a listed bundle member."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors

    try:
        model = onnx.load(str(Path(root) / rel), load_external_data=False)
    except Exception as err:  # protobuf raises its own DecodeError
        raise IntegrityError(f"bundle {root}: {rel} is not a readable ONNX graph ({type(err).__name__}); "
                             "export the bundle again") from None
    base = PurePosixPath(rel).parent
    for tensor in _get_all_tensors(model):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        member = str(base / location) if str(base) != "." else location
        resolve_member(root, member)  # no "..", no absolute path, no symlink
        if member not in files:
            raise IntegrityError(f"bundle {root}: {rel} reads external data from {location!r}, which the bundle "
                                 f"does not list; refusing to load it")
