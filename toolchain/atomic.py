"""Atomic outputs: a stage writes into a temporary sibling and renames it into place.

A run killed at any moment leaves either no output or the previous complete one, never a half
written directory. The temporary names start with ``.``, carry the writer's process id and end in
``.partial``, so a later write to the same target removes the leftovers of writers that died.
Replacing an existing directory swaps old and new in one ``renameat2(RENAME_EXCHANGE)`` on Linux
(two renames elsewhere), so there is no moment at which the target is missing.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from kdtool.errors import InputError
from kdtool.paths import output_lock
from kdtool.signals import raise_if_terminated

MARKER = ".kdtool"  # a file every kdtool output directory carries, so --overwrite is safe


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# kinds of output that may replace each other: a model is a model whichever command trained it
KIND_FAMILY = {"finetune": "model", "distill": "model", "prune": "model", "best-student": "model",
               "demo-base-model": "model"}


def _family(kind: str | None) -> str | None:
    return KIND_FAMILY.get(kind, kind) if kind else None


def stamped_kind(target: Path) -> str | None:
    """The kind recorded in ``target``'s ``.kdtool`` stamp (bundle, predictions, model, run ...), or None."""
    try:
        stamp = json.loads((Path(target) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    kind = stamp.get("kind") if isinstance(stamp, dict) else None
    return kind if isinstance(kind, str) else None


def check_output_dir(target: Path, overwrite: bool, kind: str | None = None) -> None:
    """Refuse to replace a directory that exists, unless asked to and it is a kdtool output of the same kind.

    ``--overwrite`` replaces only what kdtool wrote as this kind of output (the stamp's ``kind``):
    ``validate --predictions-dir MODEL --overwrite`` must never delete a model directory.
    """
    target = Path(target)
    if not target.exists() and not target.is_symlink():
        return
    if target.is_symlink():
        raise InputError(f"output {target} is a symlink; give the real directory path or another path")
    if not target.is_dir():
        raise InputError(f"output {target} exists and is a file; choose another path")
    if not overwrite:
        raise InputError(f"output directory {target} already exists; pass --overwrite to replace it")
    if any(target.iterdir()) and not (target / MARKER).exists():
        raise InputError(
            f"output directory {target} exists and was not written by kdtool; refusing to replace it"
        )
    found = stamped_kind(target)
    if kind and any(target.iterdir()) and _family(found) != _family(kind):
        raise InputError(f"output directory {target} holds a kdtool {found or 'output of unknown kind'}, not a "
                         f"{kind}; --overwrite replaces only a {kind}, choose another path")


def check_output_file(path, option: str = "output", *, parent_must_exist: bool = False) -> Path | None:
    """Refuse, before any work, a file output that cannot be written: a directory, or a parent that is a file.

    ``parent_must_exist``: for outputs opened as they are written (``answer -o``), a missing
    directory is reported now, not after the model has loaded.
    """
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{option} {p} is a directory; give a file name")
    parent = next((q for q in p.absolute().parents if q.exists()), None)
    if parent is not None and not parent.is_dir():
        raise InputError(f"{option} {p}: {parent} is a file, not a directory")
    if parent_must_exist and not p.absolute().parent.is_dir():
        raise InputError(f"{option} {p}: directory {p.absolute().parent} does not exist; create it first")
    return p


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(target: Path) -> None:
    """Remove ``.<name>.<pid>.*.partial`` siblings of ``target`` left by writers that are no longer running."""
    target = Path(target)
    if not target.parent.is_dir():
        return
    prefix = f".{target.name}."
    for p in target.parent.iterdir():
        if not (p.name.startswith(prefix) and p.name.endswith(".partial")):
            continue
        pid = p.name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where the call is not available."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # a filesystem without exchange support: fall back to two renames
    raise OSError(code, os.strerror(code), str(a))


@contextlib.contextmanager
def atomic_directory(target: Path, *, overwrite: bool = False, kind: str = "output") -> Iterator[Path]:
    """Yield a temporary directory that becomes ``target`` when the block succeeds.

    On an exception the temporary directory is removed and ``target`` is untouched. When
    ``target`` exists (and ``overwrite`` allows it), the old directory is swapped out only after
    the new one is complete.
    """

    target = Path(target).absolute()
    check_output_dir(target, overwrite, kind)
    target.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(target):  # a second writer of the same target is refused, not silently lost
        yield from _write_directory(target, kind)


def _write_directory(target: Path, kind: str) -> Iterator[Path]:
    remove_stale_partials(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".partial", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the output gets a normal directory's mode
    try:
        yield tmp
        raise_if_terminated()  # never commit an output after a SIGTERM, even one Python dropped
        (tmp / MARKER).write_text(json.dumps({"kind": kind}) + "\n")
        _fsync_dir(tmp)
        if target.exists():
            if _exchange(tmp, target):  # tmp now holds the old directory
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                old = target.with_name(f".{target.name}.{os.getpid()}.old.partial")
                if old.exists():
                    shutil.rmtree(old)
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file through a temporary sibling and ``os.replace``."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a binary file (a PNG, say) through a temporary sibling and ``os.replace``."""
    path = check_output_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".partial", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; the output gets a normal file's mode
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        raise_if_terminated()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def finite_json(obj):
    """``obj`` with every NaN or infinity replaced by None: kdtool's JSON outputs are strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(finite_json(obj), indent=2, ensure_ascii=False, allow_nan=False) + "\n")


SCRATCH_PREFIX = "kdtool-"


def _reclaim_scratch(root: Path, purpose: str) -> None:
    """Remove ``kdtool-PURPOSE-PID-*`` directories whose process is gone (killed by SIGKILL or a power cut)."""
    prefix = f"{SCRATCH_PREFIX}{purpose}-"
    with contextlib.suppress(OSError):
        for p in root.iterdir():
            pid = p.name[len(prefix):].split("-", 1)[0] if p.name.startswith(prefix) else ""
            if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)) \
                    and p.is_dir() and not p.is_symlink() and p.stat().st_uid == os.getuid():
                shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def scratch_dir(purpose: str) -> Iterator[Path]:
    """A private temporary directory ``$TMPDIR/kdtool-PURPOSE-PID-xxxx``, removed at the end of the block.

    The pid in the name lets the next run reclaim what a killed run left behind; SIGTERM and
    Ctrl-C unwind through the ``finally`` (the CLI turns SIGTERM into an interrupt).
    """
    root = Path(tempfile.gettempdir())
    _reclaim_scratch(root, purpose)
    tmp = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{purpose}-{os.getpid()}-", dir=root))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
