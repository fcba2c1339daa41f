"""The HTTP face of ``kdtool serve``: FastAPI routes, limits, bearer-token check and access log.

Routes: ``POST /v1/answer`` (one question object or a list of them), ``GET /healthz`` (the process
is alive), ``GET /readyz`` (model loaded, warmed up, not draining), ``GET /v1/model`` (what a client
needs: name, precision, digests, limits; never a path), ``GET /metrics`` (Prometheus text), the Open
Inference Protocol routes under ``/v2`` (:mod:`kdtool.serve.v2`) and FastAPI's ``/openapi.json`` and
``/docs``.

Every refusal is a JSON body ``{"error": "<one line>"}`` with the status that says why: 401/403
(no or wrong bearer token), 404 (no such route or model), 408 (the body did not arrive within
``request_timeout``), 413 (body over ``max_body_bytes``, a context over ``max_context_chars``, more
questions than the queue holds), 422 on /v1 and 400 on /v2 (not JSON, or a field wrong: the line
names it), 503 with ``Retry-After`` (the queue is full, or the server is draining), 504 (no answer
within ``request_timeout``), 500 (an engine failure, never a client's mistake). Bodies are read and
checked by :mod:`kdtool.serve.handling`; connections by :mod:`kdtool.serve.connections`.
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
from starlette.exceptions import HTTPException

from kdtool.serve.batcher import Batcher
from kdtool.serve.config import ServeConfig
from kdtool.serve.handling import (
    Refusal,
    answer_questions,
    engine_failure,
    error_response,
    examples_from_rows,
    load_json,
    read_body,
)
from kdtool.serve.metrics import ServeMetrics
from kdtool.serve.v2 import add_oip_routes, is_oip_probe, oip_route_label

ACCESS_LOG = logging.getLogger("kdtool.serve.access")
OPEN_ROUTES = {"/healthz", "/readyz"}  # probes work without the token (and /v2/health/*, /v2/models/NAME/ready)


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


V1_HINT = 'send {"question": ..., "context": ...} or a list of them'


def _parse_questions(body: bytes, config: ServeConfig):
    """``(examples, user ids, was_a_list)`` from the body, or a 413/422 refusal naming the field."""
    data = load_json(body, 422, V1_HINT)
    many = isinstance(data, list)
    rows = data if many else [data]
    if not rows:
        raise Refusal(422, "body is an empty list; send at least one {\"question\", \"context\"} object")
    if len(rows) > config.max_queue:
        raise Refusal(413, f"body holds {len(rows)} questions, more than the server queues ({config.max_queue}, "
                           "--max-queue); split it")
    examples, user_ids = examples_from_rows(rows, config, lambda i: f"body[{i}]" if many else "body", 422)
    return examples, user_ids, many


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

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):  # 404 / 405 in the same {"error": ...} shape
        return error_response(exc.status_code, f"{exc.detail}: {request.method} {request.url.path[:200]}")

    _add_v1_routes(app, config=config, batcher=batcher, metrics=metrics, state=state, model_info=model_info)
    add_oip_routes(app, config=config, batcher=batcher, metrics=metrics, state=state, model_info=model_info)
    app.add_middleware(GuardAndLog, api_key=api_key, metrics=metrics, access_log=config.access_log,
                       routes=frozenset(r.path for r in app.routes))
    return app


def _add_v1_routes(app: FastAPI, *, config: ServeConfig, batcher: Batcher, metrics: ServeMetrics, state: dict,
                   model_info: dict) -> None:
    identity = model_info["identity"]

    @app.post("/v1/answer", response_model=None, responses={200: {"model": AnswerOut | AnswerList}},
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
                  "anyOf": [QuestionIn.model_json_schema(), {"type": "array", "items": QuestionIn.model_json_schema()}]
              }}}}})
    async def answer(request: Request):
        """Answer one question object, or a list of them (answers in the same order)."""
        t0 = time.perf_counter()
        try:
            body = await read_body(request, config.max_body_bytes, config.request_timeout)
            examples, user_ids, many = _parse_questions(body, config)
            request.state.questions = len(examples)
            rows = await answer_questions(batcher, config, examples, user_ids, t0)
        except Refusal as refusal:
            return error_response(refusal.status, refusal.message, refusal.headers)
        except Exception as err:  # the engine failed: one line, not a traceback
            return engine_failure(err)
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
            return error_response(503, "not ready: loading or shutting down")
        return {"status": "ready", "model": identity}

    @app.get("/v1/model")
    async def model():
        """The served model: name, precision, digests, engine, limits (no paths of this or the export machine)."""
        return model_info

    @app.get("/metrics")
    async def prometheus_metrics():
        """Prometheus text exposition of the server's metrics."""
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)


class GuardAndLog:
    """Bearer-token check, request counts by route and status, and the JSON access log line.

    A plain ASGI middleware (Starlette's ``@app.middleware("http")`` wraps every response in an
    extra task and stream, a measurable cost per request on a 2-core device)."""

    def __init__(self, app, *, api_key: str | None, metrics: ServeMetrics, access_log: bool, routes: frozenset):
        self.app, self.api_key, self.metrics, self.access_log, self.routes = app, api_key, metrics, access_log, routes

    def _label(self, path: str) -> str:
        """The route a path took, for the metrics (a bounded set of labels, whatever paths clients send)."""
        return path if path in self.routes else oip_route_label(path) or "other"

    def _refusal(self, scope) -> JSONResponse | None:
        if self.api_key is None or scope["path"] in OPEN_ROUTES or is_oip_probe(scope["path"]):
            return None
        auth = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return error_response(401, "this server needs a bearer token: send 'Authorization: Bearer <key>'",
                                  {"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(token.strip().encode(), self.api_key.encode()):
            return error_response(403, "the bearer token is not the one this server was started with")
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
            self.metrics.requests.labels(self._label(path), str(status[0])).inc()
            if self.access_log:
                client = scope.get("client")
                ACCESS_LOG.info(json.dumps({
                    "ts": round(time.time(), 3), "client": client[0] if client else None, "method": scope["method"],
                    "path": path[:200], "status": status[0], "ms": round((time.perf_counter() - t0) * 1000, 2),
                    "questions": scope.get("state", {}).get("questions")}))
