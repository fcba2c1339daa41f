"""What kdtool wrote, and whether its writer still runs: the records behind cleanup and ``--overwrite``.

Every directory kdtool creates carries a file ``.kdtool`` (:data:`MARKER`) that kdtool wrote itself:

* while it is being written (a hidden ``.NAME.PID.xxx.partial`` beside its target), a *partial marker*:
  the writer's identity (boot id, pid and the process's start time, so a reused pid is another
  process), the directory's own name and its device and inode (a marker copied into another
  directory, or a directory renamed since, does not match). :func:`dead_partial` says a directory may
  be removed only when that marker is intact and its writer is provably gone.
* once committed, a *stamp*: the kind of output (bundle, predictions, model ...) and every entry the
  directory holds (relative name; type; size, modification time and sha256 of files; link targets).
  :func:`stamp_mismatch` says why a directory is not exactly what kdtool wrote: a stamp copied into a
  directory of other files, or any file added, removed or rewritten since, is not replaced by
  ``--overwrite``. A file whose time changed is compared by digest, so a complete copy of an output
  (``cp -r``, ``scp`` to a device) still matches and may be replaced.
* a *container* (a ``kdtool run`` or ``kdtool demo`` directory, written into over many runs) records its
  kind and its own device and inode instead of a listing.

Markers are read only when they are small regular files, opened without following a link and
without blocking (a FIFO named ``.kdtool`` is never waited for).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
from pathlib import Path

MARKER = ".kdtool"
MAX_MARKER_BYTES = 16 << 20  # a stamp lists every file of an output: generous, but never unbounded
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def read_small(path, limit: int = 1 << 20, dir_fd: int | None = None) -> bytes | None:
    """The bytes of ``path`` (relative to ``dir_fd`` when given) if it is a regular file of at most ``limit``
    bytes; None otherwise (a link, a FIFO, a device, a directory, a missing or an oversized file)."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW, dir_fd=dir_fd)
    except (OSError, ValueError):
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        chunks, size = [], 0
        while size <= limit and (block := os.read(fd, min(1 << 20, limit + 1 - size))):
            chunks.append(block)
            size += len(block)
        return b"".join(chunks) if size <= limit else None
    except OSError:
        return None
    finally:
        os.close(fd)


def read_marker(directory) -> dict | None:
    """The parsed ``.kdtool`` record of ``directory``, or None when there is none kdtool could have written."""
    raw = read_small(Path(directory) / MARKER, MAX_MARKER_BYTES)
    if raw is None:
        return None
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


def read_json(path, limit: int = 1 << 20):
    """A small JSON record kdtool wrote (run.json, latest.json, a stage record), or None when ``path`` is not a
    small regular file holding JSON: a FIFO or a link planted there is never waited for or followed."""
    raw = read_small(path, limit)
    if raw is None:
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def write_marker(directory, record: dict) -> None:
    """Write ``record`` as ``directory/.kdtool``: a new file (never through an existing name), then renamed."""
    directory = Path(directory)
    tmp = directory / f"{MARKER}.{os.getpid()}.{secrets.token_hex(6)}.new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666)
    try:
        data = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        while data:
            data = data[os.write(fd, data):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, directory / MARKER)


# ---------------------------------------------------------------------------------------------
# who is writing: a process identity that a reused pid does not match


def _boot_id() -> str | None:
    raw = read_small("/proc/sys/kernel/random/boot_id", 128)
    return raw.decode("ascii", "replace").strip() if raw else None


def _start_time(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (``/proc/PID/stat`` field 22), or None.

    Read as ``PID/stat`` relative to a descriptor of ``/proc``: an emulator that fakes its own ``/proc/self``
    (qemu-user answers ``/proc/self/stat`` and ``/proc/<its pid>/stat`` with a start time of its own) then
    cannot make a process's record of itself disagree with what every other process reads of it, which would
    let one kdtool take another's live scratch directory for a dead writer's."""
    try:
        proc = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        raw = read_small(f"{pid}/stat", 4096, dir_fd=proc)
    finally:
        os.close(proc)
    if not raw:
        return None
    fields = raw.rpartition(b")")[2].split()  # the command name may hold spaces and parentheses
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def process_identity(pid: int | None = None) -> dict:
    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "start": _start_time(pid), "boot": _boot_id()}


def is_running(identity) -> bool:
    """Whether the process ``identity`` names may still run (True where that cannot be ruled out)."""
    if not isinstance(identity, dict) or not isinstance(identity.get("pid"), int) or identity["pid"] <= 0:
        return True
    pid, start = identity["pid"], identity.get("start")
    boot = _boot_id()
    if boot and identity.get("boot") and identity["boot"] != boot:
        return False  # written before the last reboot
    if start is not None and os.path.isdir("/proc/self"):
        return _start_time(pid) == start  # gone, or the pid now belongs to a later process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


# ---------------------------------------------------------------------------------------------
# partial directories


def _identity_of(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino]


def mark_partial(directory) -> None:
    """Record in a directory kdtool just created that this process writes it (see the module docstring)."""
    directory = Path(directory)
    write_marker(directory, {"partial": directory.name, "writer": process_identity(),
                             "dir": _identity_of(os.lstat(directory))})


def dead_partial(directory) -> bool:
    """True when ``directory`` carries an intact partial marker whose writer is no longer running."""
    directory = Path(directory)
    try:
        st = os.lstat(directory)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        return False
    record = read_marker(directory)
    if record is None or record.get("partial") != directory.name or record.get("dir") != _identity_of(st):
        return False
    return not is_running(record.get("writer"))


# ---------------------------------------------------------------------------------------------
# committed outputs: what they hold


def _sha256(path: str) -> str | None:
    h = hashlib.sha256()
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    except OSError:
        return None
    try:
        while block := os.read(fd, 1 << 20):
            h.update(block)
    except OSError:
        return None
    finally:
        os.close(fd)
    return h.hexdigest()


def listing(directory, *, digests: bool = True) -> dict[str, list]:
    """Every entry under ``directory`` but its marker: relative name -> ``["f", size, mtime_ns, sha256]`` for a
    file (``sha256`` None without ``digests``), ``["d"]``, ``["l", target]``, or ``["o", size]`` (a FIFO ...)."""
    out: dict[str, list] = {}
    stack = [(Path(directory), "")]
    while stack:
        path, prefix = stack.pop()
        with os.scandir(path) as entries:
            for e in entries:
                rel = prefix + e.name
                if rel == MARKER or rel.startswith(MARKER + "."):
                    continue
                st = e.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    out[rel] = ["d"]
                    stack.append((Path(e.path), rel + "/"))
                elif stat.S_ISLNK(st.st_mode):
                    out[rel] = ["l", os.readlink(e.path)]
                elif stat.S_ISREG(st.st_mode):
                    out[rel] = ["f", st.st_size, st.st_mtime_ns, _sha256(e.path) if digests else None]
                else:
                    out[rel] = ["o", st.st_size]
    return out


def write_stamp(directory, kind: str) -> None:
    """Stamp a finished output: its kind and exactly what it holds now (names, sizes, times and digests)."""
    write_marker(directory, {"kind": kind, "files": listing(directory)})


def stamped_kind(directory) -> str | None:
    record = read_marker(directory)
    kind = record.get("kind") if record else None
    return kind if isinstance(kind, str) else None


def _same(directory: Path, rel: str, listed, now: list) -> bool:
    """Whether entry ``rel`` is as listed: a file by size, and by its digest unless its modification time is the
    same (a copy made without ``-a``, or shipped to a device, still matches; an edited file does not)."""
    if not isinstance(listed, list) or not listed or listed[0] != now[0]:
        return False
    if now[0] != "f":
        return listed == now
    if len(listed) != 4 or listed[1] != now[1]:
        return False
    return listed[2] == now[2] or (listed[3] is not None and listed[3] == _sha256(str(directory / rel)))


def _difference(directory: Path, files: dict, now: dict, skip: str | None = None) -> str | None:
    for rel in sorted(now.keys() - files.keys() - {skip}):
        return f"{rel} was not written by kdtool"
    for rel in sorted(files.keys() - now.keys() - {skip}):
        return f"{rel} was removed since kdtool wrote it"
    for rel in sorted(files.keys() - {skip}):
        if not _same(directory, rel, files[rel], now[rel]):
            return f"{rel} was changed since kdtool wrote it"
    return None


def stamp_mismatch(directory) -> str | None:
    """None when ``directory`` holds exactly what its stamp lists; else what differs, in a few words."""
    record = read_marker(directory)
    if record is None or not isinstance(record.get("kind"), str):
        return "it has no kdtool stamp"
    files = record.get("files")
    if not isinstance(files, dict):
        return "its stamp lists no files (written by an older kdtool, or not by kdtool)"
    try:
        return _difference(Path(directory), files, listing(directory, digests=False))
    except OSError as err:
        return f"it cannot be listed ({err.strerror})"


def add_to_stamp(directory, rel: str) -> None:
    """Record ``rel``, just written by kdtool into its own finished output, in that output's stamp.

    Only a stamp that matched everything else is updated: an output someone changed stays unmatched.
    """
    record = read_marker(directory)
    files = record.get("files") if record else None
    if not isinstance(files, dict):
        return
    if _difference(Path(directory), files, listing(directory, digests=False), skip=rel) is None:
        write_marker(directory, dict(record, files=listing(directory)))


# ---------------------------------------------------------------------------------------------
# containers: run and demo directories


def stamp_container(directory, kind: str) -> None:
    directory = Path(directory)
    write_marker(directory, {"kind": kind, "container": True, "dir": _identity_of(os.lstat(directory))})


def container_kind(directory) -> str | None:
    """The kind of the container ``directory`` if its stamp is intact and belongs to this very directory."""
    record = read_marker(directory)
    try:
        here = _identity_of(os.lstat(directory))
    except OSError:
        return None
    if not record or not record.get("container") or record.get("dir") != here:
        return None
    kind = record.get("kind")
    return kind if isinstance(kind, str) else None
