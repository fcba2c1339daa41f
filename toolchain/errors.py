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


class DeviceCheckFailed(KdtoolError):
    """A bundle's self-test failed on this device: it does not compute what the bundle was certified with."""

    exit_code = 1


class EnvironmentUnsupported(KdtoolError):
    """The machine lacks what the request needs (a GPU, TensorRT, a package)."""

    exit_code = 3


_SURROGATE = None


def check_text(value: str, where: str, field: str) -> str:
    """``value`` if it is Unicode text; an InputError naming ``where`` and ``field`` if it holds a lone
    surrogate (a ``\\ud800`` escape in JSON without its pair): no encoder, tokenizer or output could take it."""
    global _SURROGATE
    if _SURROGATE is None:
        import re

        _SURROGATE = re.compile("[\ud800-\udfff]")
    bad = _SURROGATE.search(value)
    if bad:
        raise InputError(f"{where}: field {field!r} holds {ascii(bad.group())} at character {bad.start()}, a lone "
                         "surrogate that is not Unicode text; fix the text (\\uD800-\\uDFFF escapes come in pairs)")
    return value


def json_error(path, err: ValueError) -> InputError:
    """The one line for a JSON file that does not parse: where it breaks, or an integer too long to convert
    (Python refuses more than 4300 digits with a plain ValueError, which once surfaced as an internal error)."""
    lineno = getattr(err, "lineno", None)
    if lineno is not None:
        return InputError(f"{path}: not valid JSON (line {lineno}, column {err.colno}: {err.msg})")
    return InputError(f"{path}: holds an integer of more than 4300 digits, too long to read; "
                      "give ids and numbers of a sane length (a long id as a string)")


MAX_QUOTE = 120  # characters of a user's value an error message repeats


def quote(value, limit: int = MAX_QUOTE) -> str:
    """``repr(value)`` cut to ``limit`` characters: an error line never repeats megabytes of input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


DEFAULT_MAX_INPUT_BYTES = 2 << 30  # 2 GiB; commands with legitimately bigger inputs offer --max-input-size


def max_input_bytes() -> int:
    """The size limit for input files: ``KDTOOL_MAX_INPUT_BYTES`` (set by ``--max-input-size``) or 2 GiB."""
    import os

    raw = os.environ.get("KDTOOL_MAX_INPUT_BYTES", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_MAX_INPUT_BYTES


def require_file(path, what: str = "file", max_bytes: int | None = None):
    """Return ``path`` as a Path if it is an existing regular file within the size limit, else raise InputError.

    A FIFO would block forever and ``/dev/zero`` would be read until memory runs out: inputs are
    regular files (symlinks to them are fine), checked before they are opened.
    """
    import stat
    from pathlib import Path

    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(f"{what} not found: {p}") from None
    except OSError as err:
        raise InputError(f"{what} {p} cannot be read ({err.strerror}); check the path") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{what} {p} is a directory; give a file")
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or \
            stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file"
        raise InputError(f"{what} {p} is {kind}; give a regular file (copy the stream to a file first)")
    limit = max_bytes or max_input_bytes()
    if st.st_size > limit:
        raise InputError(f"{what} {p} is {st.st_size / 2**20:.0f} MiB, over the {limit / 2**20:.0f} MiB input limit; "
                         "raise it with --max-input-size (or KDTOOL_MAX_INPUT_BYTES) if the file is meant to be this big")
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
