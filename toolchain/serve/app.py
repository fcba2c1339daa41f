"""The HTTP face of ``kdtool serve``: FastAPI routes, limits, bearer-token check and access log.

Routes: ``POST /v1/answer`` (one question object or a list of them), ``GET /healthz`` (the process
is alive), ``GET /readyz`` (model loaded, warmed up, not draining), ``GET /v1/model`` (the manifest
and engine), ``GET /metrics`` (Prometheus text) and FastAPI's ``/openapi.json`` and ``/docs``.

Every refusal is a JSON body ``{"error": "<one line>"}`` with the status that says why: 401/403
(no or wrong bearer token), 413 (body over ``max_body_bytes``, a context over ``max_context_chars``,
more questions than the queue holds), 422 (not JSON, or a field wrong: the line names it), 503 with
``Retry-After`` (the queue is full, or the server is draining), 504 (no answer within
``request_timeout``), 500 (an engine failure). The request body is read here, in bounded pieces,
and validated by :func:`kdtool.questions.question_from_row`, the same check ``kdtool answer`` makes.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from kdtool.errors import InputError
from kdtool.questions import question_from_row
from kdtool.serve.batcher import Batcher, QueueFull, Stopped
from kdtool.serve.config import ServeConfig
from kdtool.serve.metrics import ServeMetrics

ACCESS_LOG = logging.getLogger("kdtool.serve.access")
OPEN_ROUTES = {"/healthz", "/readyz"}  # probes work without the token


class QuestionIn(BaseModel):
    id: str | int | None = Field(None, description="Your id for the question; echoed back (default: its index).")
    question: str = Field(..., min_length=1)
    context: str = Field(..., min_length=1, description="The passage to answer from.")


class AnswerOut(BaseModel):
    id: str
    answer: str = Field(..., description="context[start:end]; empty when no span qualifies.")
    start: int = Field(..., description="Character offset in the context (-1 for no answer).")
    end: int
    score: float | None = Field(..., description="Start + end logit of the span.")


class AnswerList(BaseModel):
    answers: list[AnswerOut]
    model: dict


class _Refusal(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _Refusal(413, f"request body of {declared} bytes is over the {limit}-byte limit (--max-body-bytes)")
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise _Refusal(413, f"request body is over the {limit}-byte limit (--max-body-bytes)")
    return bytes(body)


def _parse_questions(body: bytes, config: ServeConfig):
    """``(examples, user ids, was_a_list)`` from the body, or a 413/422 refusal naming the field."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _Refusal(422, f"body is not valid JSON ({getattr(err, 'msg', err)}); send "
                            "{\"question\": ..., \"context\": ...} or a list of them") from None
    many = isinstance(data, list)
    rows = data if many else [data]
    if not rows:
        raise _Refusal(422, "body is an empty list; send at least one {\"question\", \"context\"} object")
    if len(rows) > config.max_queue:
        raise _Refusal(413, f"body holds {len(rows)} questions, more than the server queues ({config.max_queue}, "
                            "--max-queue); split it")
    pairs = []
    for i, row in enumerate(rows):
        where = f"body[{i}]" if many else "body"
        try:
            pairs.append(question_from_row(row, where, str(i)))
        except InputError as err:
            raise _Refusal(422, str(err)) from None
        if len(row["context"]) > config.max_context_chars:
            raise _Refusal(413, f"{where}.context has {len(row['context'])} characters, over the "
                                f"{config.max_context_chars} limit (--max-context-chars)")
    return [e for e, _ in pairs], [u for _, u in pairs], many


def create_app(config: ServeConfig, batcher: Batcher, metrics: ServeMetrics, model_info: dict) -> FastAPI:
    """The application; ``model_info`` is what ``/v1/model`` shows (its ``identity`` goes with every answer)."""
    api_key = config.api_key()
    identity = model_info["identity"]
    state = {"ready": False}

    async def lifespan(app):
        batcher.start()
        state["ready"] = True
        yield
        state["ready"] = False  # the HTTP server has drained: finish queued work and stop the worker
        await asyncio.get_running_loop().run_in_executor(None, batcher.stop)

    app = FastAPI(title="kdtool serve", version=identity.get("kdtool_version") or "", lifespan=lifespan,
                  description="Extractive question answering with a kdtool bundle or model directory.")

    @app.post("/v1/answer", response_model=None, responses={200: {"model": AnswerOut | AnswerList}},
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                  "anyOf": [QuestionIn.model_json_schema(), {"type": "array", "items": QuestionIn.model_json_schema()}]
              }}}}})
    async def answer(request: Request):
        """Answer one question object, or a list of them (answers in the same order)."""
        t0 = time.perf_counter()
        try:
            body = await _read_body(request, config.max_body_bytes)
            examples, user_ids, many = _parse_questions(body, config)
            request.state.questions = len(examples)
            try:
                batcher.admit(len(examples))
            except QueueFull:
                raise _Refusal(503, f"server busy: {config.max_queue} questions queued (--max-queue); retry shortly",
                               {"Retry-After": "1"}) from None
            except Stopped:
                raise _Refusal(503, "server is shutting down; retry on another instance", {"Retry-After": "5"}) from None
            left = config.request_timeout - (time.perf_counter() - t0)
            try:
                rows = await asyncio.wait_for(batcher.answer(examples, user_ids), timeout=max(left, 0.001))
            except (asyncio.TimeoutError, TimeoutError):
                raise _Refusal(504, f"no answer within {config.request_timeout:g} s (--request-timeout)") from None
        except _Refusal as refusal:
            return _error(refusal.status, refusal.message, refusal.headers)
        except Exception as err:  # the engine failed: one line, not a traceback
            return _error(500, f"the engine failed ({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''})")
        metrics.latency.observe(time.perf_counter() - t0)
        if many:
            return JSONResponse({"answers": rows, "model": identity})
        return JSONResponse({**rows[0], "model": identity})

    @app.get("/healthz")
    async def healthz():
        """The process is up and serving HTTP."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz():
        """200 once the model is loaded and warmed up; 503 before that and while draining."""
        if not state["ready"]:
            return _error(503, "not ready: loading or shutting down")
        return {"status": "ready", "model": identity}

    @app.get("/v1/model")
    async def model():
        """The served model: its identity, the engine, and the bundle manifest (without the file table)."""
        return model_info

    @app.get("/metrics")
    async def prometheus_metrics():
        """Prometheus text exposition of the server's metrics."""
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(GuardAndLog, api_key=api_key, metrics=metrics, access_log=config.access_log,
                       routes=frozenset(r.path for r in app.routes))
    return app


class GuardAndLog:
    """Bearer-token check, request counts by route and status, and the JSON access log line.

    A plain ASGI middleware (Starlette's ``@app.middleware("http")`` wraps every response in an
    extra task and stream, a measurable cost per request on a 2-core device)."""

    def __init__(self, app, *, api_key: str | None, metrics: ServeMetrics, access_log: bool, routes: frozenset):
        self.app, self.api_key, self.metrics, self.access_log, self.routes = app, api_key, metrics, access_log, routes

    def _refusal(self, scope) -> JSONResponse | None:
        if self.api_key is None or scope["path"] in OPEN_ROUTES:
            return None
        auth = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return _error(401, "this server needs a bearer token: send 'Authorization: Bearer <key>'",
                          {"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            return _error(403, "the bearer token is not the one this server was started with")
        return None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0, status = time.perf_counter(), [500]

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send_and_note)
            else:
                await self.app(scope, receive, send_and_note)
        finally:
            path = scope["path"]
            self.metrics.requests.labels(path if path in self.routes else "other", str(status[0])).inc()
            if self.access_log:
                client = scope.get("client")
                ACCESS_LOG.info(json.dumps({
                    "ts": round(time.time(), 3), "client": client[0] if client else None, "method": scope["method"],
                    "path": path, "status": status[0], "ms": round((time.perf_counter() - t0) * 1000, 2),
                    "questions": scope.get("state", {}).get("questions")}))
