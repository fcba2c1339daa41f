"""Where a command may write: never into its own inputs, and one writer per output at a time.

Every command calls :func:`guard_outputs` before any work. It resolves each output and each input
(symlinks, ``..``) and compares files and directories by ``(st_dev, st_ino)``, so a hard link or a
second mount (``mount --bind``) of an input is that input; it refuses, in one line, an output that
is, contains or lies inside an input (``answer --input F -o F`` would empty ``F``, ``--predictions-dir
MODEL --overwrite`` would delete a model) and an output that is a stream (``-``, a pipe, a device).
The inputs are remembered while the command runs: cleanup never removes them (:func:`is_input`).
It then takes an exclusive lock per output: a ``.NAME.kdtool-lock`` file next to it, created
exclusively and holding the writer's pid, removed when the writer is done. An existing lock file is
opened read-only without following a link, and only if it is a small regular file with one name:
it is never truncated or written, and one that a dead writer left (nobody holds its ``flock``) is
replaced. Two runs writing the same path cannot both report success with one result silently
lost: the second is refused and told which process holds the output. The lock lasts as long as
the command (or the ``with`` block of :func:`output_lock`).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from kdtool.errors import InputError, KdtoolError

LOCK_SUFFIX = ".kdtool-lock"
_HELD: dict[str, list] = {}  # lock path -> [fd, holders]: re-entrant within one process


class OutputBusy(KdtoolError):
    """Another running kdtool process is writing the same output."""

    exit_code = 1


def _resolved(path) -> Path:
    # realpath, not abspath first: "link/.." is the parent of the link's target, not the link's own directory
    return Path(os.path.realpath(os.path.expanduser(str(path))))


def _identity(path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _ancestors(path: Path) -> set[tuple[int, int]]:
    """(st_dev, st_ino) of every existing directory above the resolved ``path``."""
    return {i for q in path.parents if (i := _identity(q)) is not None}


def _relation(out: Path, inp: Path) -> str | None:
    """How output ``out`` overlaps input ``inp`` (both resolved), or None.

    Files and directories are compared by device and inode, not by name: a second mount of a
    directory (``mount --bind``) or a hard link is the same thing under another name.
    """
    io, ii = _identity(out), _identity(inp)
    if out == inp or (io is not None and io == ii):
        return "is"
    if out in inp.parents or (io is not None and io in _ancestors(inp)):
        return "contains"
    if inp in out.parents or (ii is not None and ii in _ancestors(out)):
        return "lies inside"
    return None


def _items(paths: Mapping[str, object] | Iterable[tuple[str, object]]) -> list[tuple[str, object]]:
    pairs = paths.items() if isinstance(paths, Mapping) else paths
    out = []
    for name, value in pairs:
        values = value if isinstance(value, (list, tuple)) else [value]
        out += [(name, v) for v in values if v is not None and str(v) != ""]
    return out


_STREAMS = {stat.S_IFIFO: "a pipe (FIFO)", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
            stat.S_IFSOCK: "a socket"}


def check_output_target(path, option: str = "output") -> None:
    """Refuse an output that is not a place for a file or directory: ``-``, a pipe, a device, a socket.

    Outputs are written whole beside their destination and renamed into place; ``/dev/stdout`` or a
    FIFO would be replaced (as root: in ``/dev``) or half-written, so they are refused before any work.
    ``kdtool answer`` writes to stdout when ``-o`` is left out.
    """
    if str(path) == "-":
        raise InputError(f"{option} -: outputs are files, not streams; give a file path (kdtool answer prints to "
                         "stdout when -o is left out)")
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return
    what = _STREAMS.get(stat.S_IFMT(mode))
    if what:
        raise InputError(f"{option} {path} is {what}; outputs are files written whole and renamed into place, "
                         "give a file path (kdtool answer prints to stdout when -o is left out)")


_INPUTS: dict[str, tuple[int, int]] = {}  # resolved path -> (st_dev, st_ino) of the inputs this process's commands named


def _live_inputs() -> set[tuple[int, int]]:
    """The identities of the named inputs that are still there (an inode number is reused once a file is gone)."""
    return {ident for p, ident in list(_INPUTS.items()) if _identity(p) == ident}


def is_input(path) -> bool:
    """Whether ``path`` is, holds or lies inside an input of a command of this process (never to be removed)."""
    ident = _identity(path)
    inputs = _live_inputs() if ident is not None and _INPUTS else set()
    if not inputs:
        return False
    if ident in inputs or _ancestors(_resolved(path)) & inputs:
        return True
    if not os.path.isdir(path) or os.path.islink(path):
        return False
    with contextlib.suppress(OSError):
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                if _identity(os.path.join(root, name)) in inputs:
                    return True
    return False


def remember_inputs(inputs) -> list[str]:
    """Record ``inputs`` (as :func:`check_outputs_apart` takes them) for :func:`is_input` until :func:`forget_inputs`."""
    found = [(str(r), i) for _, p in _items(inputs) if str(p) != "-" and (i := _identity(r := _resolved(p)))]
    _INPUTS.update(found)
    return [k for k, _ in found]


def forget_inputs(keys: list[str]) -> None:
    for k in keys:
        _INPUTS.pop(k, None)


def check_outputs_apart(inputs, outputs) -> None:
    """Refuse any output that is, contains or lies inside an input (after symlinks, ``..``, hard links and
    second mounts), or that is a stream (:func:`check_output_target`).

    ``inputs`` and ``outputs`` map an option name (``--data``, ``MODEL``) to a path, a list of
    paths, or None.
    """
    ins = [(name, p, _resolved(p)) for name, p in _items(inputs) if str(p) != "-"]
    outs = _items(outputs)
    for oname, o in outs:
        check_output_target(o, oname)
    for k, (oname, o) in enumerate(outs):
        for pname, other in outs[:k]:
            if _relation(_resolved(o), _resolved(other)) or _relation(_resolved(other), _resolved(o)):
                raise InputError(f"{oname} {o} and {pname} {other} overlap; give each output its own path")
    for oname, o in outs:
        ro = _resolved(o)
        for iname, i, ri in ins:
            rel = _relation(ro, ri)
            if rel == "is":
                raise InputError(f"{oname} {o} is the same file as {iname} {i}; writing it would destroy the input, "
                                 "choose another output path")
            if rel:
                raise InputError(f"{oname} {o} {rel} {iname} {i}; writing it would destroy the input, "
                                 "choose an output outside the inputs")


def lock_path(target) -> Path:
    """The lock file of output ``target``: a hidden sibling, or in the nearest existing ancestor.

    The name is the output's own (a symlink at ``target`` is replaced by the output, not followed)."""
    target = Path(os.path.abspath(os.path.expanduser(str(target))))
    parent = _resolved(target.parent)
    missing = [target.name]
    while not parent.exists() and parent != parent.parent:
        missing.insert(0, parent.name)
        parent = parent.parent
    return parent / f".{'__'.join(missing)}{LOCK_SUFFIX}"


_LOCK_OPEN = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)


def _open_lock(path: Path) -> tuple[int | None, bool]:
    """(descriptor, created by us) of the lock file; (None, False) where none can be made, (-1, False)
    where it vanished between two opens.

    A new lock file is created exclusively; an existing one is opened read-only, without following a
    link, and only if it looks like a kdtool lock (a small regular file with one name holding a pid):
    a lock file is never truncated or written unless this process created it.
    """
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _LOCK_OPEN, 0o644), True
    except FileExistsError:
        pass
    except OSError:
        return None, False  # a read-only place: the write itself will fail with its own message
    try:
        fd = os.open(path, os.O_RDONLY | _LOCK_OPEN)
    except FileNotFoundError:
        return -1, False
    except OSError as err:
        raise InputError(f"lock file {path} cannot be opened ({err.strerror}: a symlink or worse, not written by "
                         "kdtool); remove it") from None
    st = os.fstat(fd)
    text = os.pread(fd, 64, 0) if stat.S_ISREG(st.st_mode) else b"x"
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_size > 32 or not text.strip().isdigit() and text:
        os.close(fd)
        raise InputError(f"lock file {path} is not a kdtool lock (not a small file holding a pid, or a hard link "
                         "to another file); remove it")
    return fd, False


def acquire_output_lock(target) -> str | None:
    """Take the lock of ``target`` (re-entrant in this process); its key, or None where no lock file can be made."""
    import fcntl

    path = lock_path(target)
    key = str(path)
    if key in _HELD:
        _HELD[key][1] += 1
        return key
    for _ in range(1000):
        fd, created = _open_lock(path)
        if fd is None:
            return None
        if fd < 0:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise OutputBusy(f"output {target} is being written by another kdtool process (pid {holder}); "
                             "wait for it to finish or choose another output path") from None
        try:  # the holder unlinks the file when it is done: a lock on an unlinked file is no lock
            same = os.lstat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same and not created:
            os.unlink(path)  # a dead writer's lock (nobody holds it): drop it, and make our own
        if not same or not created:
            os.close(fd)
            continue
        os.write(fd, f"{os.getpid()}\n".encode())
        _HELD[key] = [fd, 1, path]
        return key
    raise OutputBusy(f"output {target}: its lock file {path} keeps changing; another process is racing for it")


def release_output_lock(key: str | None) -> None:
    if key is None or key not in _HELD:
        return
    _HELD[key][1] -= 1
    if _HELD[key][1] == 0:
        fd, _, path = _HELD.pop(key)
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still locked; a waiter that opened it sees the inode change and retries
        os.close(fd)


@contextlib.contextmanager
def output_lock(target) -> Iterator[None]:
    key = acquire_output_lock(target)
    try:
        yield
    finally:
        release_output_lock(key)


def guard_outputs(inputs, outputs) -> None:
    """The check every command makes before any work: outputs apart from inputs, then locked.

    Locks taken here are released when the running click command finishes (or the process exits).
    """
    check_outputs_apart(inputs, outputs)
    import click

    ctx = click.get_current_context(silent=True)
    if ctx is not None:  # cleanup never removes an input of the running command (kdtool.atomic)
        remembered = remember_inputs(inputs)
        ctx.call_on_close(lambda: forget_inputs(remembered))
    if os.environ.get("RANK", "0") != "0" or os.environ.get("LOCAL_RANK", "0") != "0":
        return  # one lock per run: the other processes of a distributed run write nothing themselves
    keys = [acquire_output_lock(o) for _, o in _items(outputs)]
    if ctx is not None:
        ctx.call_on_close(lambda: [release_output_lock(k) for k in keys])
