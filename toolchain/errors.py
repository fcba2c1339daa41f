"""The one error mechanism of kdtool.

Library code raises a :class:`KdtoolError` subclass with a message of one line that says what
was wrong, where, and what to do. The CLI turns it into that line on stderr and the exit code of
the class; nothing else in the code base formats errors for users.
"""

from __future__ import annotations


class KdtoolError(Exception):
    """A failure the user can act on. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class InputError(KdtoolError):
    """Bad input: a missing or malformed file, an unknown name, an impossible option."""

    exit_code = 2


class IntegrityError(KdtoolError):
    """A bundle or checkpoint whose files do not match what was recorded for them."""

    exit_code = 2


class EnvironmentUnsupported(KdtoolError):
    """The machine lacks what the request needs (a GPU, TensorRT, a package)."""

    exit_code = 3


def require_file(path, what: str = "file"):
    """Return ``path`` as a Path if it is an existing regular file, else raise InputError."""
    from pathlib import Path

    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} not found: {p}")
    if p.is_dir():
        raise InputError(f"{what} {p} is a directory; give a file")
    return p


def require_dir(path, what: str = "directory"):
    """Return ``path`` as a Path if it is an existing directory, else raise InputError."""
    from pathlib import Path

    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} not found: {p}")
    if not p.is_dir():
        raise InputError(f"{what} {p} is a file; give a directory")
    return p
