"""The ``kdtool`` command line: a thin click layer over the library.

Every command lives in its own module under ``kdtool.cli`` and exposes ``command``; the table
below maps command names to modules and is the only place a command is registered. Modules are
imported only when their command runs, so ``kdtool --help`` stays fast.

Errors: library code raises :class:`kdtool.errors.KdtoolError`; :class:`KdtoolGroup` turns it
into one line on stderr and the error's exit code. ``--debug`` shows the traceback instead.
Usage errors (a bad option value, a missing argument, an unknown command) are one line too and
exit 2; an operating-system error (permission denied, disk full) is one line and exits 1;
Ctrl-C exits 130; SIGTERM is handled the same way (the command cleans up through the same
``KeyboardInterrupt`` path, says so in one line) and exits 143, also when it lands in a ``__del__``
(see :mod:`kdtool.signals`). Python warnings from libraries are hidden unless ``--debug``.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import logging
import os
import signal
import sys
import tempfile
import threading
import traceback
import warnings

import click

from kdtool import __version__, signals
from kdtool.errors import KdtoolError

# name -> module; a command whose module is not there (yet) is simply not listed.
COMMANDS: dict[str, str] = {
    "score": "kdtool.cli.score",
    "validate": "kdtool.cli.validate",
    "answer": "kdtool.cli.answer",
    "serve": "kdtool.cli.serve",
    "finetune": "kdtool.cli.finetune",
    "distill": "kdtool.cli.distill",
    "prune": "kdtool.cli.prune",
    "export": "kdtool.cli.export",
    "build-engine": "kdtool.cli.build_engine",
    "profiles": "kdtool.cli.profiles",
    "profile": "kdtool.cli.profile",
    "demo": "kdtool.cli.demo",
    "run": "kdtool.cli.run",
    "split": "kdtool.cli.split",
    "derive-pairs": "kdtool.cli.derive_pairs",
    "verify": "kdtool.cli.verify",
    "keygen": "kdtool.cli.keygen",
    "triton": "kdtool.cli.triton",
}


def _interrupt_code() -> int:
    return 143 if signals.termination_requested() else 130  # 128 + the signal number, as shells report it


class KdtoolGroup(click.Group):
    """A click group with lazily imported commands and one error handler for all of them."""

    def main(self, *args, **kwargs):
        utf8_streams()
        return super().main(*args, **kwargs)

    def list_commands(self, ctx):
        return sorted(n for n, m in COMMANDS.items() if importlib.util.find_spec(m) is not None)

    def get_command(self, ctx, name):
        module = COMMANDS.get(name)
        if module is None or importlib.util.find_spec(module) is None:
            return None
        return importlib.import_module(module).command

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as err:  # a bad group option (``kdtool --bogus``)
            _usage_exit(err)

    def invoke(self, ctx):
        debug = ctx.params.get("debug") or os.environ.get("KDTOOL_DEBUG") == "1"
        try:
            result = super().invoke(ctx)
            signals.raise_if_terminated()  # a SIGTERM whose exception Python dropped (in a __del__) still ends as one
            return result
        except KdtoolError as err:
            if debug:
                traceback.print_exc()
            click.echo(f"Error: {_one_line(str(err))}", err=True)
            ctx.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("Terminated (SIGTERM)." if signals.termination_requested() else "Interrupted.", err=True)
            ctx.exit(_interrupt_code())
        except SystemExit as err:  # a command that reported its own interruption exits 130; SIGTERM is 143
            if err.code == 130:
                raise SystemExit(_interrupt_code()) from None
            raise
        except click.UsageError as err:
            if debug:
                traceback.print_exc()
            _usage_exit(err)
        except click.exceptions.Exit as err:
            if err.exit_code == 130 and signals.termination_requested():
                ctx.exit(143)
            raise
        except (click.ClickException, click.Abort, BrokenPipeError):
            raise  # click prints its own exceptions and handles a closed pipe (``kdtool answer ... | head``)
        except OSError as err:  # the machine, not kdtool: a permission, a full disk, a vanished file
            if debug:
                traceback.print_exc()
            where = f" ({err.filename})" if err.filename else ""
            click.echo(f"Error: {err.strerror or type(err).__name__}{where}; check the path, its permissions "
                       "and the free disk space", err=True)
            ctx.exit(1)
        except Exception as err:  # a bug, not bad input: say so, keep the traceback behind --debug
            if debug:
                traceback.print_exc()
            if isinstance(err, RecursionError):  # json/yaml on input nested thousands deep: the input is at fault
                click.echo("Error: input nested too deeply to read (thousands of levels of [ or {); "
                           "give a flat file", err=True)
                ctx.exit(2)
            click.echo(
                f"Error: internal error ({type(err).__name__}: {_one_line(str(err))}); rerun with --debug for the traceback",
                err=True,
            )
            ctx.exit(1)


MAX_ERROR_CHARS = 600


def utf8_streams() -> None:
    """stdout and stderr in UTF-8 whatever the locale or ``PYTHONIOENCODING`` says (an answer in Greek under
    ``PYTHONIOENCODING=ascii`` once was an internal error); stderr escapes what cannot be encoded at all."""
    for stream, errors in ((sys.stdout, None), (sys.stderr, "backslashreplace")):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "").replace("_", "")
        if encoding != "utf8" and hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(encoding="utf-8", errors=errors or getattr(stream, "errors", None) or "strict")
            except (ValueError, OSError, io.UnsupportedOperation):
                pass  # a stream that was already read from, or is not a text file: leave it as it is


def _one_line(message: str) -> str:
    """An error as one line of bounded length, whatever value it quotes (a 409-byte recipe once made 80 MB)."""
    line = " ".join(message.split())
    if len(line) <= MAX_ERROR_CHARS:
        return line
    return f"{line[:MAX_ERROR_CHARS]}... ({len(line) - MAX_ERROR_CHARS} more characters)"


def _usage_exit(err: click.UsageError):
    """A usage error as one line (click would print usage, a hint and the error on three)."""
    ctx = err.ctx
    path = " ".join(["kdtool", *ctx.command_path.split()[1:]]) if ctx is not None else "kdtool"  # not "-c", "main"
    where = f" (see '{path} --help')"
    message = _one_line(err.format_message())
    click.echo(f"Error: {message}{where}", err=True)
    raise click.exceptions.Exit(err.exit_code)


@click.group(cls=KdtoolGroup, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="kdtool")
@click.option("--debug", is_flag=True, help="Show full tracebacks and debug logs.")
@click.option("--max-input-size", type=click.IntRange(1, 1 << 24), default=None, metavar="MIB",
              help="Largest input file read, in MiB [default: 2048]; inputs must be regular files.")
def main(debug: bool, max_input_size: int | None) -> None:
    """kdtool: distil a large extractive QA model and ship the student to a device.

    \b
    Typical flow:
      kdtool finetune  ENCODER  --train train.json -o teacher     # make a teacher
      kdtool distill   teacher  --train train.json -o student     # TinyBERT KD
      kdtool export    student  -o bundle --precision int8        # ONNX / INT8 / TRT
      kdtool validate  teacher student bundle --data dev.json     # F1/EM drift
      kdtool profile   teacher student bundle                     # latency side by side
    """
    signals.reset()
    click.get_current_context().call_on_close(signals.reset)  # library calls after an in-process run are not "terminated"
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, signals.on_sigterm)  # restored when the command ends
        if previous is not None:
            click.get_current_context().call_on_close(lambda: signal.signal(signal.SIGTERM, previous))
        hook = sys.unraisablehook  # a SIGTERM that lands in a __del__: no "Exception ignored" traceback
        sys.unraisablehook = signals.quiet_unraisable
        click.get_current_context().call_on_close(lambda: setattr(sys, "unraisablehook", hook))
    _quiet_home()
    if max_input_size:  # an environment variable so that worker processes inherit it; restored for in-process callers
        before = os.environ.get("KDTOOL_MAX_INPUT_BYTES")
        os.environ["KDTOOL_MAX_INPUT_BYTES"] = str(max_input_size << 20)
        click.get_current_context().call_on_close(
            lambda: os.environ.pop("KDTOOL_MAX_INPUT_BYTES") if before is None
            else os.environ.__setitem__("KDTOOL_MAX_INPUT_BYTES", before))
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _notices_to_stderr(debug)
    if not debug:
        for noisy in ("transformers", "optimum", "onnxruntime", "torch"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        warnings.filterwarnings("ignore")  # library warnings would break the one-line error rule


def _notices_to_stderr(debug: bool) -> None:
    """kdtool's own warnings (``logging.getLogger("kdtool...")``) as one ``Warning:`` line each on this command's stderr."""
    handler = logging.StreamHandler(sys.stderr)  # the stream of this invocation (a test runner swaps it)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if debug else "Warning: %(message)s"))
    logger = logging.getLogger("kdtool")
    before = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    click.get_current_context().call_on_close(lambda: (logger.removeHandler(handler), setattr(logger, "propagate", before)))


def _quiet_home() -> None:
    """Under a read-only or missing HOME, matplotlib would warn on stderr about its cache: give it a private one."""
    if "MPLCONFIGDIR" in os.environ:
        return
    home = os.path.expanduser("~")
    config = os.path.join(home, ".config")
    if not os.access(config if os.path.isdir(config) else home, os.W_OK):
        os.environ["MPLCONFIGDIR"] = os.path.join(tempfile.gettempdir(), f"kdtool-mpl-{os.getuid()}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
