"""SIGTERM as an exception, and the checks that catch the one Python swallowed.

The CLI installs :func:`on_sigterm`, which raises :class:`Terminated` wherever the program is, so
every ``finally`` and ``except KeyboardInterrupt`` cleans up as for Ctrl-C. Python cannot deliver
that exception everywhere: a signal that arrives while a ``__del__`` method or a weakref callback
runs (a regex or tokenizer object being collected, say) has its exception printed as "Exception
ignored in ..." and dropped, and the program carries on. :func:`quiet_unraisable` (the CLI's
``sys.unraisablehook``) sees exactly those drops: it keeps the exception quiet and marks it, and
:func:`raise_if_terminated` raises it again at the points that must not be passed after a SIGTERM:
every progress event, and the rename that commits an output (:mod:`kdtool.atomic`).
"""

from __future__ import annotations

import signal
import sys


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that every ``finally`` and ``except KeyboardInterrupt`` cleans up."""


_state = {"term": False, "dropped": False}


def on_sigterm(signum, frame) -> None:
    """The SIGTERM handler: remember the request, let a second SIGTERM end the process, raise."""
    _state["term"] = True
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM while cleaning up ends the process
    raise Terminated()


def termination_requested() -> bool:
    return _state["term"]


def reset() -> None:
    _state.update(term=False, dropped=False)


def raise_if_terminated() -> None:
    """Raise the :class:`Terminated` that Python dropped, once; a delivered one is never raised again (its
    cleanup may still report progress and write files)."""
    if _state["dropped"]:
        _state["dropped"] = False
        raise Terminated()


def quiet_unraisable(unraisable) -> None:
    """A ``sys.unraisablehook``: a dropped :class:`Terminated` is kept for :func:`raise_if_terminated`, quietly;
    anything else goes to Python's own hook."""
    if isinstance(unraisable.exc_value, Terminated):
        _state["dropped"] = True
        return
    sys.__unraisablehook__(unraisable)
