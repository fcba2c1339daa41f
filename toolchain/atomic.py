"""Atomic outputs: nothing kdtool writes is ever written through a name that already exists.

A file output is created new beside its destination (in a private partial directory, with
``O_CREAT|O_EXCL|O_NOFOLLOW``), written, fsync'd and only then renamed over the destination: a
hard link or a symlink at the destination is replaced, never written through, and a run killed
at any moment leaves the previous complete file or the new one. A directory output is written in
a hidden ``.NAME.PID.xxx.partial`` sibling and renamed into place; replacing an existing directory
swaps old and new in one ``renameat2(RENAME_EXCHANGE)`` on Linux (two renames elsewhere), so there
is no moment at which the target is missing. A stream of lines (``kdtool answer -o``) goes to a
file created the same way and renamed into place before its first line: :class:`LineFile`
appends whole lines only, also when a write fails half-way (a full disk, ``ulimit -f``).

Cleanup and ``--overwrite`` go by the records of :mod:`kdtool.stamps`, never by names: a partial
directory is removed only when the marker kdtool wrote into it proves its writer dead, and an
existing output is replaced only with ``--overwrite`` when it holds exactly what its stamp lists.
Neither ever touches an input of the running command (:func:`kdtool.paths.is_input`).
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

from kdtool import stamps
from kdtool.errors import InputError
from kdtool.paths import check_output_target, is_input, output_lock
from kdtool.signals import raise_if_terminated
from kdtool.stamps import MARKER, stamped_kind  # noqa: F401 - part of this module's interface

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


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


def check_output_dir(target: Path, overwrite: bool, kind: str | None = None) -> None:
    """Refuse to replace a directory that exists, unless asked to and it is exactly a kdtool output of this kind.

    ``--overwrite`` replaces only what kdtool wrote as this kind of output (the stamp's ``kind``:
    ``validate --predictions-dir MODEL --overwrite`` must never delete a model directory), and only
    while the directory holds exactly the files the stamp lists (:func:`kdtool.stamps.stamp_mismatch`):
    a copied or forged stamp beside other files, or a file added or edited since, is refused.
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
    if not any(target.iterdir()):
        return
    found = stamped_kind(target)
    if found is None:
        raise InputError(
            f"output directory {target} exists and was not written by kdtool; refusing to replace it"
        )
    if kind and _family(found) != _family(kind):
        raise InputError(f"output directory {target} holds a kdtool {found}, not a "
                         f"{kind}; --overwrite replaces only a {kind}, choose another path")
    why = stamps.stamp_mismatch(target)
    if why:
        raise InputError(f"output directory {target} is not as kdtool wrote it ({why}); --overwrite replaces only "
                         "an unchanged kdtool output: move your files out or choose another path")


CONTAINERS = ("run", "demo")  # directories kdtool writes into over many runs (``kdtool run -o``, ``kdtool demo -o``)


def claim_container(root: Path, kind: str, what: str = "output directory", accept=CONTAINERS) -> Path:
    """Make ``root`` a kdtool container of ``kind``, or check that it is one already (its stamp belongs to it).

    Outputs inside a container are replaced one by one under the usual rules; the container itself is
    never replaced, so its stamp records only its kind and its own device and inode: a stamp copied
    into another directory does not make that directory kdtool's to write into.
    """
    root = Path(root).absolute()
    if root.is_symlink():
        raise InputError(f"{what} {root} is a symlink; give the real directory path")
    if root.exists() and not root.is_dir():
        raise InputError(f"{what} {root} is a file; choose another -o")
    found = stamps.container_kind(root) if root.is_dir() else None
    if root.is_dir() and any(root.iterdir()) and found not in accept:
        raise InputError(f"{what} {root} exists and was not written by kdtool"
                         f"{'' if found is None else f' as a {kind} directory'}; choose another -o")
    root.mkdir(parents=True, exist_ok=True)
    if found is None:
        stamps.stamp_container(root, kind)
    return root


def check_output_file(path, option: str = "output", *, parent_must_exist: bool = False) -> Path | None:
    """Refuse, before any work, a file output that cannot be written: a directory, a pipe or device, or a
    parent that is a file.

    ``parent_must_exist``: for outputs opened as they are written (``answer -o``), a missing
    directory is reported now, not after the model has loaded.
    """
    if path is None:
        return None
    p = Path(path)
    check_output_target(p, option)
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


def remove_stale_partials(target: Path) -> None:
    """Remove the partial directories beside ``target`` that kdtool writers left when they died.

    Names only narrow the search: a directory is removed when the marker kdtool wrote into it at
    creation is intact and names a writer that is no longer running (:func:`kdtool.stamps.dead_partial`),
    and never when it is, holds or lies in an input of this command.
    """
    target = Path(target)
    prefix = f".{target.name}."
    with contextlib.suppress(OSError):
        for p in target.parent.iterdir():
            if p.name.startswith(prefix) and p.name.endswith(".partial") and stamps.dead_partial(p) \
                    and not is_input(p):
                shutil.rmtree(p, ignore_errors=True)


def new_partial_dir(target: Path) -> Path:
    """A new private directory beside ``target``, marked as this process's partial output."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".partial", dir=target.parent))
    try:
        stamps.mark_partial(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


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
    the new one is complete, and only if it still holds exactly what its stamp lists.
    """

    target = Path(target).absolute()
    check_output_dir(target, overwrite, kind)
    target.parent.mkdir(parents=True, exist_ok=True)
    with output_lock(target):  # a second writer of the same target is refused, not silently lost
        yield from _write_directory(target, kind, overwrite)


def _write_directory(target: Path, kind: str, overwrite: bool) -> Iterator[Path]:
    remove_stale_partials(target)
    tmp = new_partial_dir(target)
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the output gets a normal directory's mode
    try:
        yield tmp
        raise_if_terminated()  # never commit an output after a SIGTERM, even one Python dropped
        stamps.write_stamp(tmp, kind)
        _fsync_dir(tmp)
        if target.exists() or target.is_symlink():
            _replace_directory(tmp, target, kind, overwrite)
        else:
            os.rename(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_directory(new: Path, target: Path, kind: str, overwrite: bool) -> None:
    """Swap ``new`` in for the existing ``target``; the old one is removed only if it was exactly kdtool's."""
    check_output_dir(target, overwrite, kind)  # again: minutes may have passed since the first check
    if _exchange(new, target):  # ``new`` now names the old directory
        old = new
    else:
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".old.partial", dir=target.parent))
        os.rename(target, old)  # onto the empty directory just made: a fresh name nobody else holds
    why = stamps.stamp_mismatch(old) if any(old.iterdir()) else None
    if why:  # changed in the instant between the check and the swap: put it back untouched
        if old == new:
            _exchange(new, target)
        else:
            os.rename(old, target)
        raise InputError(f"output directory {target} changed while kdtool wrote its replacement ({why}); "
                         "it was left as it is")
    if old != new:
        os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a UTF-8 text file through a new file beside it and a rename."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file as the module docstring says: created new, fsync'd, renamed over ``path``."""
    path = check_output_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path)
    box = new_partial_dir(path)
    try:
        new = box / "new"
        fd = os.open(new, _CREATE, 0o666)  # the umask applies: a normal file's mode
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        raise_if_terminated()
        os.rename(new, path)
    finally:
        shutil.rmtree(box, ignore_errors=True)
    _fsync_dir(path.parent)


class LineFile:
    """A new file at ``path``, created by this run and renamed into place at once, that grows by whole lines.

    :meth:`append` writes a block of complete lines; if the write fails part-way (``EFBIG`` under
    ``ulimit -f``, ``ENOSPC``, an interrupt), the file is cut back to its last complete line before
    the error goes on, so the file never ends in half a line.
    """

    def __init__(self, path: Path, first: bytes = b"", option: str = "--output"):
        """``first``: lines the file holds when it appears (a resumed run's log), written before the rename."""
        path = check_output_file(Path(path), option, parent_must_exist=True)
        remove_stale_partials(path)
        box = new_partial_dir(path)
        try:
            new = box / "new"
            self.fd = os.open(new, _CREATE | os.O_APPEND, 0o666)
            view = memoryview(first)
            while view:
                view = view[os.write(self.fd, view):]
            os.rename(new, path)
        except BaseException:
            shutil.rmtree(box, ignore_errors=True)
            raise
        shutil.rmtree(box, ignore_errors=True)
        self.path, self.size = path, len(first)

    def append(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.size)
            raise
        self.size += len(data)

    def sync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


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
    """Remove ``kdtool-PURPOSE-*`` directories whose marker proves their writer dead (SIGKILL, a power cut)."""
    prefix = f"{SCRATCH_PREFIX}{purpose}-"
    with contextlib.suppress(OSError):
        for p in root.iterdir():
            if p.name.startswith(prefix) and stamps.dead_partial(p) and not is_input(p):
                shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def scratch_dir(purpose: str) -> Iterator[Path]:
    """A private temporary directory ``$TMPDIR/kdtool-PURPOSE-PID-xxxx``, removed at the end of the block.

    Its partial marker lets the next run reclaim what a killed run left behind; SIGTERM and
    Ctrl-C unwind through the ``finally`` (the CLI turns SIGTERM into an interrupt).
    """
    root = Path(tempfile.gettempdir())
    _reclaim_scratch(root, purpose)
    tmp = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{purpose}-{os.getpid()}-", dir=root))
    try:
        stamps.mark_partial(tmp)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

