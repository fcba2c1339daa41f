"""The Open Inference Protocol (KServe v2) routes of ``kdtool serve``, beside ``/v1/answer``.

``GET /v2/health/live`` and ``/v2/health/ready`` (200, or 400 while loading or draining),
``GET /v2`` (server metadata), ``GET /v2/models/NAME`` (model metadata: the tensors of
:mod:`kdtool.serve.oip`), ``GET /v2/models/NAME/ready`` and ``POST /v2/models/NAME/infer``, each
also under ``/v2/models/NAME/versions/1/...``. An infer request goes through the same body limits,
bearer token, batcher (dynamic batching across /v1 and /v2 requests), queue bound and timeouts as
``/v1/answer``, and gets the same answers. Tensors travel as JSON (BYTES elements as JSON strings);
Triton's binary-data extension is refused in one line. Every refusal is ``{"error": "..."}``: 400
for a malformed request (the line names the tensor or field), 404 for another model's name.
"""

from __future__ import annotations

import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from kdtool.serve import oip
from kdtool.serve.handling import (
    Refusal,
    answer_questions,
    engine_failure,
    error_response,
    examples_from_rows,
    load_json,
    read_body,
)

HEALTH = ("/v2/health/live", "/v2/health/ready")
MODEL_PATHS = ("/v2/models/{model_name}", "/v2/models/{model_name}/versions/{model_version}")
INFER_HINT = 'send an Open Inference Protocol request {"inputs": [{"name": "question", "datatype": "BYTES", ...}]}'


def is_oip_probe(path: str) -> bool:
    """Health and model-readiness probes: open without the bearer token, as /healthz and /readyz are."""
    return path in HEALTH or (path.startswith("/v2/models/") and path.endswith("/ready"))


def oip_route_label(path: str) -> str | None:
    """``/v2/models/{name}...`` for a model route (a bounded metrics label), None for anything else."""
    if not path.startswith("/v2/models/"):
        return None
    return "/v2/models/{name}" + next((s for s in ("/infer", "/ready") if path.endswith(s)), "")


def _model_checker(name: str):
    """A check that a path names the served model (and its one version): 404 otherwise."""
    def check_model(model_name: str, model_version: str | None) -> None:
        if model_name != name:
            raise Refusal(404, f"model {model_name[:60]!r} is not served here; this server serves {name!r}")
        if model_version is not None and model_version != oip.MODEL_VERSION:
            raise Refusal(404, f"model {name!r} has no version {model_version[:20]!r}; its one version is "
                               f"{oip.MODEL_VERSION}")
    return check_model


def _infer_route(config, batcher, metrics, name: str, check_model):
    """``POST /v2/models/NAME/infer``: the request's rows answered through the shared batcher."""
    async def infer(request: Request, model_name: str, model_version: str | None = None):
        t0 = time.perf_counter()
        try:
            check_model(model_name, model_version)
            if "inference-header-content-length" in request.headers:
                raise Refusal(400, "binary tensor data (Triton's binary extension) is not taken here; send JSON tensors "
                                   "(tritonclient: set_data_from_numpy(..., binary_data=False))")
            body = await read_body(request, config.max_body_bytes, config.request_timeout)
            try:
                parsed = oip.parse_infer_request(load_json(body, 400, INFER_HINT), max_items=config.max_queue)
            except oip.OipError as err:
                raise Refusal(err.status, str(err)) from None
            rows = [{"question": q, "context": c} for q, c in zip(parsed.questions, parsed.contexts, strict=True)]
            examples, user_ids = examples_from_rows(rows, config, lambda i: f"inputs row {i}", 400)
            request.state.questions = len(examples)
            answers = await answer_questions(batcher, config, examples, user_ids, t0)
        except Refusal as refusal:
            return error_response(refusal.status, refusal.message, refusal.headers)
        except Exception as err:  # the engine failed: one line, not a traceback
            return engine_failure(err)
        metrics.latency.observe(time.perf_counter() - t0)
        return JSONResponse(oip.infer_response(name, answers, parsed))
    return infer


def add_oip_routes(app: FastAPI, *, config, batcher, metrics, state: dict, model_info: dict) -> None:
    name, platform = model_info["oip"]["name"], model_info["oip"]["platform"]
    check_model = _model_checker(name)

    def ready_or_400() -> Response:
        return Response(status_code=200) if state["ready"] else error_response(400, "not ready: loading or shutting down")

    @app.get("/v2/health/live")
    async def live():
        """200 while the process serves HTTP."""
        return Response(status_code=200)

    @app.get("/v2/health/ready")
    async def ready():
        """200 once the model is loaded and warmed up; 400 before that and while draining."""
        return ready_or_400()

    @app.get("/v2")
    async def server_metadata():
        """The server's name, version and protocol extensions (none)."""
        return {"name": "kdtool", "version": model_info["identity"].get("kdtool_version") or "", "extensions": []}

    async def metadata(model_name: str, model_version: str | None = None):
        try:
            check_model(model_name, model_version)
        except Refusal as refusal:
            return error_response(refusal.status, refusal.message)
        return oip.model_metadata(name, platform)

    async def model_ready(model_name: str, model_version: str | None = None):
        try:
            check_model(model_name, model_version)
        except Refusal as refusal:
            return error_response(refusal.status, refusal.message)
        return ready_or_400()

    infer = _infer_route(config, batcher, metrics, name, check_model)
    for base in MODEL_PATHS:
        app.add_api_route(base, metadata, methods=["GET"], summary="Model metadata (Open Inference Protocol)")
        app.add_api_route(base + "/ready", model_ready, methods=["GET"], summary="Model readiness")
        app.add_api_route(base + "/infer", infer, methods=["POST"], summary="Inference (Open Inference Protocol)")
