"""Questions in, answers out: the one format that ``kdtool answer`` and ``kdtool serve`` share.

A question is a JSON object ``{"id"?, "question", "context"}``; an answer is the JSON object
``{"id", "answer", "start", "end", "score"}`` with character offsets into the context. Both
commands validate questions with :func:`question_from_row` (so a bad field reads the same in a
JSONL line and in an HTTP body) and format answers with :func:`answer_row` (so the same question
gets the same answer from either). The internal example id is the caller's position (a line
number, an index), never the user's id, so repeated user ids cannot overwrite each other's answers.

For ``answer --input FILE.jsonl``: :func:`check_jsonl` validates the whole file without keeping it,
:func:`jsonl_chunks` reads it in bounded chunks, and :class:`AnswerSink` writes each chunk's lines
as soon as they exist (flushed and fsync'd to a file, or to stdout).
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from kdtool.atomic import LineFile
from kdtool.data import Example, Prediction
from kdtool.errors import InputError, check_text, require_file

CHUNK = 64  # questions per predict call in answer: bounds memory, and how often output is flushed
FIELDS = ("question", "context")


def question_from_row(row, where: str, internal_id: str) -> tuple[Example, str]:
    """``(example, user id)`` from one decoded JSON value; ``where`` names it in the error."""
    if not isinstance(row, dict):
        raise InputError(f"{where} needs string fields \"question\" and \"context\" (got a JSON {type(row).__name__})")
    for field in FIELDS:
        if not isinstance(row.get(field), str):
            what = "is missing" if field not in row else f"is a {type(row[field]).__name__}"
            raise InputError(f"{where} needs string fields \"question\" and \"context\" (\"{field}\" {what})")
    for field in FIELDS:
        check_text(row[field], where, field)
        if not row[field].strip():
            raise InputError(f"{where} has an empty {field}; every question needs a question and a passage")
    uid = row.get("id", internal_id)
    if not isinstance(uid, (str, int)) or isinstance(uid, bool):
        raise InputError(f"{where} has an \"id\" that is a {type(uid).__name__}; give a string or an integer")
    if isinstance(uid, str):
        check_text(uid, where, "id")
    return Example(id=internal_id, question=row["question"], context=row["context"], answers=()), str(uid)


def answer_row(prediction: Prediction, user_id: str) -> dict:
    """The JSON answer for one question: text, character offsets, score, and the caller's id."""
    return {**prediction.to_dict(), "id": user_id}


def _parse_line(path: Path, n: int, line: str) -> tuple[Example, str]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise InputError(f"{path}:{n} is not valid JSON ({err.msg}); give one JSON object per line") from None
    except ValueError:  # int(): more than 4300 digits
        raise InputError(f"{path}:{n} holds a number too long to read (over 4300 digits); "
                         "give ids as short strings or integers") from None
    return question_from_row(row, f"{path}:{n}", str(n))


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with open(path, encoding="utf-8-sig") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    yield n, line
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; give UTF-8 JSON lines") from None


def check_jsonl(path: Path) -> int:
    """Validate every line of ``path`` without keeping them; the number of questions."""
    require_file(path, "input file")
    count = sum(1 for n, line in _lines(path) if _parse_line(path, n, line))
    if not count:
        raise InputError(f"{path} holds no questions; give one {{\"question\", \"context\"}} JSON object per line")
    return count


def jsonl_chunks(path: Path, size: int = CHUNK) -> Iterator[list[tuple[Example, str]]]:
    """``[(example, user id), ...]`` lists of at most ``size`` questions, in file order."""
    chunk = []
    for n, line in _lines(path):
        chunk.append(_parse_line(path, n, line))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class AnswerSink:
    """UTF-8 JSON lines to a new file (:class:`kdtool.atomic.LineFile`: whole lines only, fsync'd per write,
    so a killed run keeps whole lines) or to stdout, whatever the locale's encoding."""

    def __init__(self, output: Path | None):
        self.output, self.written = output, 0
        self.file = LineFile(output) if output else None

    def write(self, rows: list[dict]) -> None:
        data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
        if self.file is None:
            _stdout_bytes(data)
            self.written += len(rows)
            return
        with _signals_held():  # written and counted as one step: the count said on Ctrl-C is the lines kept
            self.file.append(data)
            self.written += len(rows)
        self.file.sync()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM (main thread) for the duration of the block; they are delivered right after it."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _stdout_bytes(data: bytes) -> None:
    out = sys.stdout
    buffer = getattr(out, "buffer", None)
    if buffer is None:
        out.write(data.decode("utf-8"))
    else:
        out.flush()
        buffer.write(data)
        buffer.flush()
    out.flush()
