"""Where a command may write: never into its own inputs, and one writer per output at a time.

Every command calls :func:`guard_outputs` before any work. It resolves each output and each input
(symlinks, ``..``, and hard links through ``st_dev``/``st_ino``) and refuses, in one line, an
output that is, contains or lies inside an input: ``answer --input F -o F`` would empty ``F``,
``validate --data S --json S`` would replace the data set, ``--predictions-dir MODEL --overwrite``
would delete a model. It then takes an exclusive lock per output (a ``.NAME.kdtool-lock`` file next
to it, holding the writer's pid, removed when the writer is done), so two runs writing the same path cannot both report success
with one result silently lost: the second is refused and told which process holds the output.
The lock lasts as long as the command (or the ``with`` block of :func:`output_lock`).
"""

from __future__ import annotations

import contextlib
import os
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


def _same_file(a: Path, b: Path) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _relation(out: Path, inp: Path) -> str | None:
    """How output ``out`` overlaps input ``inp`` (both resolved), or None."""
    if out == inp or _same_file(out, inp):
        return "is"
    if out in inp.parents:
        return "contains"
    if inp in out.parents:
        return "lies inside"
    # a hard-linked directory is impossible, but an output file may be a hard link of an input inside a directory
    return None


def _items(paths: Mapping[str, object] | Iterable[tuple[str, object]]) -> list[tuple[str, object]]:
    pairs = paths.items() if isinstance(paths, Mapping) else paths
    out = []
    for name, value in pairs:
        values = value if isinstance(value, (list, tuple)) else [value]
        out += [(name, v) for v in values if v is not None and str(v) not in ("", "-")]
    return out


def check_outputs_apart(inputs, outputs) -> None:
    """Refuse any output that is, contains or lies inside an input (after symlinks, ``..`` and hard links).

    ``inputs`` and ``outputs`` map an option name (``--data``, ``MODEL``) to a path, a list of
    paths, or None; ``-`` (stdin/stdout) is skipped.
    """
    ins = [(name, p, _resolved(p)) for name, p in _items(inputs)]
    outs = _items(outputs)
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
    """The lock file of output ``target``: a hidden sibling, or in the nearest existing ancestor."""
    target = _resolved(target)
    parent = target.parent
    missing = [target.name]
    while not parent.exists() and parent != parent.parent:
        missing.insert(0, parent.name)
        parent = parent.parent
    return parent / f".{'__'.join(missing)}{LOCK_SUFFIX}"


def acquire_output_lock(target) -> str | None:
    """Take the lock of ``target`` (re-entrant in this process); its key, or None where no lock file can be made."""
    import fcntl

    path = lock_path(target)
    key = str(path)
    if key in _HELD:
        _HELD[key][1] += 1
        return key
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return None  # a read-only place: the write itself will fail with its own message
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise OutputBusy(f"output {target} is being written by another kdtool process (pid {holder}); "
                             "wait for it to finish or choose another output path") from None
        try:  # the holder unlinks the file when it is done: a lock on an unlinked file is no lock
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[key] = [fd, 1, path]
    return key


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
    if os.environ.get("RANK", "0") != "0" or os.environ.get("LOCAL_RANK", "0") != "0":
        return  # one lock per run: the other processes of a distributed run write nothing themselves
    keys = [acquire_output_lock(o) for _, o in _items(outputs)]
    import click

    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(lambda: [release_output_lock(k) for k in keys])
