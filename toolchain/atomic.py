"""Atomic outputs: a stage writes into a temporary sibling and renames it into place.

A run killed at any moment leaves either no output or the previous complete one, never a half
written directory. The temporary names start with ``.`` and end in ``.partial`` so a later run
can recognise and remove leftovers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from kdtool.errors import InputError

MARKER = ".kdtool"  # a file every kdtool output directory carries, so --overwrite is safe


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_output_dir(target: Path, overwrite: bool) -> None:
    """Refuse to replace a directory that exists, unless asked to and it is a kdtool output."""
    target = Path(target)
    if not target.exists():
        return
    if not target.is_dir():
        raise InputError(f"output {target} exists and is a file; choose another path")
    if not overwrite:
        raise InputError(f"output directory {target} already exists; pass --overwrite to replace it")
    if any(target.iterdir()) and not (target / MARKER).exists():
        raise InputError(
            f"output directory {target} exists and was not written by kdtool; refusing to replace it"
        )


@contextlib.contextmanager
def atomic_directory(target: Path, *, overwrite: bool = False, kind: str = "output") -> Iterator[Path]:
    """Yield a temporary directory that becomes ``target`` when the block succeeds.

    On an exception the temporary directory is removed and ``target`` is untouched. When
    ``target`` exists (and ``overwrite`` allows it), the old directory is swapped out only after
    the new one is complete.
    """
    target = Path(target).absolute()
    check_output_dir(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        yield tmp
        (tmp / MARKER).write_text(json.dumps({"kind": kind}) + "\n")
        if target.exists():
            old = target.with_name(f".{target.name}.old.partial")
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")
