"""One shape for progress: library functions take ``progress: Progress | None`` and call it with events.

An event is a line of text (``Event(message="[2/6] ONNX export")``), a count of work done out of a total
(``Event(task="train", done=120, total=400)``), or both. Library code never draws anything: the CLI
passes :func:`console`, which draws a tqdm bar per task on a terminal and, under a non-TTY (a log file,
CI, a pipe), writes plain lines: each message, and a task's count at most every 10% of its total, so a
log is readable instead of thousands of carriage-return frames.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from kdtool.signals import raise_if_terminated


@dataclass(frozen=True)
class Event:
    message: str = ""  # a line for the user; empty for a pure count
    task: str = ""  # names a counted piece of work ("train", "score teacher", "profile")
    done: int | None = None  # units of that work done so far (absolute, not an increment)
    total: int | None = None  # units in all, when known
    unit: str = "it"


Progress = Callable[[Event], None]


def say(progress: Progress | None, message: str) -> None:
    """Send a line to ``progress`` if there is one; a stage boundary, so a pending SIGTERM is raised here."""
    raise_if_terminated()
    if progress is not None:
        progress(Event(message=message))


def count(progress: Progress | None, task: str, done: int, total: int | None = None, unit: str = "it") -> None:
    """Report that ``done`` of ``total`` units of ``task`` are finished."""
    raise_if_terminated()
    if progress is not None:
        progress(Event(task=task, done=done, total=total, unit=unit))


def counter(progress: Progress | None, task: str, total: int | None = None, unit: str = "it") -> Callable[[int], None]:
    """A callback that adds ``n`` finished units to ``task`` each time it is called (for per-batch loops)."""
    state = {"done": 0}

    def add(n: int = 1) -> None:
        state["done"] += n
        count(progress, task, state["done"], total, unit)

    return add


def prefixed(progress: Progress | None, prefix: str) -> Progress | None:
    """Pass events on with ``prefix`` in front of every message (nested stages of a recipe)."""
    if progress is None:
        return None

    def forward(event: Event) -> None:
        progress(Event(prefix + event.message, event.task, event.done, event.total, event.unit)
                 if event.message else event)

    return forward


class console:
    """The CLI's renderer: tqdm bars on a terminal, plain lines otherwise. Use as a context manager so
    bars are closed when the command ends, or call :meth:`close`."""

    def __init__(self, stream: TextIO | None = None, *, bars: bool = True, tty: bool | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.bars = bars  # False: messages only (``--no-progress``)
        self._open: dict[str, object] = {}
        self._printed: dict[str, int] = {}

    def __call__(self, event: Event) -> None:
        if event.message:
            if self._open:
                from tqdm import tqdm

                tqdm.write(event.message, file=self.stream)
            else:
                print(event.message, file=self.stream, flush=True)
        if event.task and event.done is not None and self.bars:
            (self._bar if self.tty else self._line)(event)

    def _bar(self, event: Event) -> None:
        from tqdm import tqdm

        bar = self._open.get(event.task)
        if bar is None or (event.total is not None and bar.total != event.total):
            if bar is not None:
                bar.close()
            bar = self._open[event.task] = tqdm(total=event.total, desc=event.task[:32], unit=event.unit,
                                                file=self.stream, dynamic_ncols=True, leave=False)
        bar.update(event.done - bar.n)

    def _line(self, event: Event) -> None:
        total = event.total or 0
        step = max(total // 10, 1) if total else 0
        last = self._printed.get(event.task)
        if last is not None and event.done < last:  # the same task name counting again from the start
            last = None
        finished = bool(total) and event.done >= total
        crossed = bool(step) and last is not None and event.done // step > last // step  # a new tenth
        if last == event.done or (last is not None and not finished and not crossed):
            return
        self._printed[event.task] = event.done
        of = f"/{total}" if total else ""
        pct = f" ({100 * event.done // total}%)" if total else ""
        print(f"{event.task}: {event.done}{of} {event.unit}{pct}", file=self.stream, flush=True)

    def close(self) -> None:
        for bar in self._open.values():
            bar.close()
        self._open.clear()

    def __enter__(self) -> console:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
