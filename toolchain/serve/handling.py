"""What every route of ``kdtool serve`` shares: reading and decoding a body under limits, refusing
with one JSON line, and running admitted questions through the batcher.

A body is data from a stranger: it is read in bounded pieces within ``request_timeout`` (a client
that uploads a byte a minute gets 408, not a connection held forever), decoded by :func:`load_json`
(a body nested 100,000 deep or holding a 5000-digit integer is a 4xx naming the field, never a
``RecursionError`` or ``ValueError`` turned 500), and every text field is checked to be valid
Unicode before it reaches the tokenizer or a response (a lone surrogate ``"\\ud800"`` would fail
both). :func:`error_response` renders any message, whatever it quotes.
"""

from __future__ import annotations

import asyncio
import json
import time

from fastapi import Request
from fastapi.responses import JSONResponse

from kdtool.errors import InputError
from kdtool.questions import question_from_row
from kdtool.serve.batcher import Batcher, QueueFull, Stopped
from kdtool.serve.config import ServeConfig

MAX_INT_DIGITS = 4300  # Python's own limit for int(str); a longer integer literal is refused by name


class Refusal(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    """``{"error": message}``; a lone surrogate quoted from a request is escaped, so rendering cannot fail."""
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The body, at most ``limit`` bytes (413 beyond), received within ``timeout`` seconds (408 beyond)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and len(declared) < 20 and int(declared) > limit:
        raise Refusal(413, f"request body of {declared} bytes is over the {limit}-byte limit (--max-body-bytes)")

    async def collect() -> bytes:
        body = bytearray()
        async for piece in request.stream():
            body += piece
            if len(body) > limit:
                raise Refusal(413, f"request body is over the {limit}-byte limit (--max-body-bytes)")
        return bytes(body)

    try:
        return await asyncio.wait_for(collect(), timeout)
    except (asyncio.TimeoutError, TimeoutError):
        raise Refusal(408, f"request body not received within {timeout:g} s (--request-timeout)",
                      {"Connection": "close"}) from None


class LongInteger:
    """A JSON integer literal of more than :data:`MAX_INT_DIGITS` digits, kept unconverted so that the
    field holding it can be named (``int()`` of it raises, and costs quadratic time)."""

    def __init__(self, digits: int):
        self.digits = digits


def _integer(text: str):
    return int(text) if len(text.lstrip("-")) <= MAX_INT_DIGITS else LongInteger(len(text.lstrip("-")))


def load_json(body: bytes, status: int, hint: str):
    """The decoded body; ``status`` (422 or 400) with a line ending in ``hint`` when it is not JSON."""
    try:
        return json.loads(body, parse_int=_integer)
    except RecursionError:
        raise Refusal(status, "body is nested too deeply to read (thousands of levels of [ or {); send flat JSON") from None
    except UnicodeDecodeError:
        raise Refusal(status, f"body is not UTF-8 text; {hint}") from None
    except ValueError as err:
        raise Refusal(status, f"body is not valid JSON ({getattr(err, 'msg', 'not JSON')}); {hint}") from None


def check_fields(row: dict, where: str, status: int) -> None:
    """Refuse an over-long integer or text that is not valid Unicode in ``row``'s fields, naming the field."""
    for field in ("id", "question", "context"):
        value = row.get(field)
        if isinstance(value, LongInteger):
            raise Refusal(status, f"{where}.{field} is an integer of {value.digits} digits, over the {MAX_INT_DIGITS} "
                                  "this server reads; send the id as a string")
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as err:
                raise Refusal(status, f"{where}.{field} is not valid Unicode (a lone surrogate at character "
                                      f"{err.start}); send UTF-8 text") from None


def examples_from_rows(rows: list, config: ServeConfig, where, status: int):
    """``(examples, user ids)`` of decoded question objects; ``where(i)`` names row ``i`` in a refusal."""
    examples, user_ids = [], []
    for i, row in enumerate(rows):
        if isinstance(row, dict):
            check_fields(row, where(i), status)
        try:
            example, uid = question_from_row(row, where(i), str(i))
        except InputError as err:
            raise Refusal(status, str(err)) from None
        if len(example.context) > config.max_context_chars:
            raise Refusal(413, f"{where(i)}.context has {len(example.context)} characters, over the "
                               f"{config.max_context_chars} limit (--max-context-chars)")
        examples.append(example)
        user_ids.append(uid)
    return examples, user_ids


async def answer_questions(batcher: Batcher, config: ServeConfig, examples, user_ids, started: float) -> list[dict]:
    """Admit the questions (503 when the queue is full or the server drains) and wait for their answers
    until ``request_timeout`` after ``started`` (504 then)."""
    try:
        batcher.admit(len(examples))
    except QueueFull:
        raise Refusal(503, f"server busy: {config.max_queue} questions queued (--max-queue); retry shortly",
                      {"Retry-After": "1"}) from None
    except Stopped:
        raise Refusal(503, "server is shutting down; retry on another instance", {"Retry-After": "5"}) from None
    left = config.request_timeout - (time.perf_counter() - started)
    try:
        return await asyncio.wait_for(batcher.answer(examples, user_ids), timeout=max(left, 0.001))
    except (asyncio.TimeoutError, TimeoutError):
        raise Refusal(504, f"no answer within {config.request_timeout:g} s (--request-timeout)") from None


def engine_failure(err: Exception) -> JSONResponse:
    """A 500 for the server's own failure: one line, not a traceback."""
    text = str(err).splitlines()[0][:200] if str(err) else ""
    return error_response(500, f"the engine failed ({type(err).__name__}: {text})")
