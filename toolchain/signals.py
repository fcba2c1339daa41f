"""SIGTERM as an exception, and the checks that catch the one Python swallowed.

The CLI installs :func:`on_sigterm`, which raises :class:`Terminated` wherever the program is, so
every ``finally`` and ``except KeyboardInterrupt`` cleans up as for Ctrl-C. Python cannot deliver
that exception everywhere: a signal that arrives while a ``__del__`` method or a weakref callback
runs (a regex or tokenizer object being collected, say) has its exception printed as "Exception
ignored in ..." and dropped, and the program carries on. So the request is also remembered, and
:func:`raise_if_terminated` raises it again at the points that must not be passed after a
SIGTERM: every progress event, and the rename that commits an output (:mod:`kdtool.atomic`).
:func:`quiet_unraisable` keeps the dropped exception from printing a traceback.
"""

from __future__ import annotations

import signal
import sys


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that every ``finally`` and ``except KeyboardInterrupt`` cleans up."""


_state = {"term": False}


def on_sigterm(signum, frame) -> None:
    """The SIGTERM handler: remember the request, let a second SIGTERM end the process, raise."""
    _state["term"] = True
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM while cleaning up ends the process
    raise Terminated()


def termination_requested() -> bool:
    return _state["term"]


def reset() -> None:
    _state["term"] = False


def raise_if_terminated() -> None:
    """Raise :class:`Terminated` if a SIGTERM came whose exception Python dropped (see the module doc)."""
    if _state["term"]:
        raise Terminated()


def quiet_unraisable(unraisable) -> None:
    """A ``sys.unraisablehook`` that drops a :class:`Terminated` (remembered, raised later) and passes the rest on."""
    if isinstance(unraisable.exc_value, Terminated):
        return
    sys.__unraisablehook__(unraisable)
