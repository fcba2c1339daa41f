"""The Open Inference Protocol (KServe v2) face of a kdtool QA model: ONE definition of its tensors.

A question-answering model served by kdtool, whether by ``kdtool serve`` (``/v2/models/NAME/infer``)
or by Triton Inference Server from a ``kdtool triton`` repository, takes and returns these tensors,
so one client (``tritonclient``, any KServe client, or :func:`infer_answers` below) works against
both. Every tensor carries a leading batch dimension and one element per question: shape ``[B, 1]``
(Triton's ``max_batch_size > 0`` form, with ``dims: [1]`` in ``config.pbtxt``).

inputs   ``question`` BYTES, ``context`` BYTES (UTF-8 text)
outputs  ``answer`` BYTES (``context[start:end]``, empty for no answer), ``start`` INT64 and ``end`` INT64
         (character offsets into the context, -1 for no answer), ``score`` FP32 (start + end logit;
         :data:`NO_SCORE` when no window held a context token, since JSON cannot carry -inf)

The model's name is :func:`default_model_name` of the bundle unless the operator gives one; its one
version is :data:`MODEL_VERSION` (the ``NAME/1/`` of a Triton repository). Over HTTP the tensors
travel as JSON (BYTES elements as JSON strings); :func:`parse_infer_request` and
:func:`infer_response` are the server's half, with no web framework in them, so a Triton Python
model can use them as well. Client mistakes are :class:`OipError` with the HTTP status to answer.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

INPUTS: tuple[tuple[str, str], ...] = (("question", "BYTES"), ("context", "BYTES"))
OUTPUTS: tuple[tuple[str, str], ...] = (("answer", "BYTES"), ("start", "INT64"), ("end", "INT64"), ("score", "FP32"))
NUMPY_DTYPES = {"BYTES": object, "INT64": "int64", "FP32": "float32"}
MODEL_VERSION = "1"
NO_SCORE = -3.4028234663852886e38  # the lowest FP32: the score of "no span at all" (numpy: -inf)
MODEL_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def default_model_name(bundle_path) -> str:
    """The model name a bundle is served under: its directory's name reduced to ``[A-Za-z0-9_.-]``
    (every other character becomes ``_``), or ``model`` when nothing is left. ``kdtool serve`` and the
    Triton repository of ``kdtool triton`` both use this rule."""
    name = os.path.basename(os.path.abspath(os.fspath(bundle_path)))
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:128].strip(".")
    return name or "model"


def check_model_name(name: str) -> str:
    """``name`` if it can be a model name in a URL path and a Triton repository; InputError otherwise."""
    from kdtool.errors import InputError

    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name) or name.strip(".") == "":
        raise InputError(f"model name {name!r} must be 1 to 128 of A-Z a-z 0-9 _ . - (and not only dots)")
    return name


class OipError(Exception):
    """A request the protocol refuses: ``status`` is the HTTP status, the message one line naming the field."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class InferRequest:
    questions: list[str]
    contexts: list[str]
    outputs: tuple[str, ...]  # the output tensors asked for, in the order asked
    id: str | None = None


def _flatten(data, depth: int, where: str) -> list:
    """Row-major elements of ``data``, which the protocol allows flat or nested as deep as the shape."""
    if not isinstance(data, list):
        raise OipError(400, f"{where} must be a list of JSON strings")
    if depth <= 1 or not any(isinstance(d, list) for d in data):
        return data
    return [e for row in data for e in _flatten(row, depth - 1, where)]


def _texts(tensor: dict, name: str, where: str) -> list[str]:
    """The UTF-8 texts of BYTES input ``tensor``, checked against its datatype and ``[B, 1]`` shape."""
    datatype = tensor.get("datatype")
    if datatype != "BYTES":
        raise OipError(400, f"input {name!r} has datatype {str(datatype)[:20]!r}; it must be BYTES (UTF-8 text)")
    shape = tensor.get("shape")
    if (not isinstance(shape, list) or len(shape) != 2 or shape[1] != 1
            or any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in shape)):
        raise OipError(400, f"input {name!r} has shape {str(shape)[:40]}; it must be [B, 1] (one text per row)")
    if isinstance(tensor.get("parameters"), dict) and "binary_data_size" in tensor["parameters"]:
        raise OipError(400, f"input {name!r} is sent as binary data, which kdtool serve does not take; send JSON "
                            "tensors (tritonclient: set_data_from_numpy(..., binary_data=False))")
    if "data" not in tensor:
        raise OipError(400, f"{where}.data is missing; give the {shape[0]} texts as JSON strings")
    texts = _flatten(tensor["data"], len(shape), f"{where}.data")
    if len(texts) != shape[0]:
        raise OipError(400, f"input {name!r} has {len(texts)} elements but shape {shape} holds {shape[0]}")
    for j, text in enumerate(texts):
        if not isinstance(text, str):
            raise OipError(400, f"input {name!r} element {j} is not a JSON string; BYTES elements are UTF-8 text")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise OipError(400, f"input {name!r} element {j} is not valid UTF-8 text (a lone surrogate at character "
                                f"{err.start}); send Unicode text") from None
    return texts


def _requested_outputs(outputs) -> tuple[str, ...]:
    names = [n for n, _ in OUTPUTS]
    if outputs is None:
        return tuple(names)
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise OipError(400, '"outputs" must be a list of {"name": ...} objects')
    asked = tuple(o.get("name") for o in outputs)
    for name in asked:
        if name not in names:
            raise OipError(400, f"output {str(name)[:40]!r} is not an output of this model; it has {', '.join(names)}")
    return asked or tuple(names)


def parse_infer_request(data, *, max_items: int) -> InferRequest:
    """The questions of a decoded ``/infer`` body; :class:`OipError` (400, 413) naming the field otherwise."""
    if not isinstance(data, dict):
        raise OipError(400, 'the body must be a JSON object {"inputs": [...]} (an Open Inference Protocol request)')
    request_id = data.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise OipError(400, '"id" must be a string')
    inputs = data.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise OipError(400, '"inputs" must be a non-empty list of tensors (question and context, BYTES, shape [B, 1])')
    wanted = dict(INPUTS)
    texts: dict[str, list[str]] = {}
    for i, tensor in enumerate(inputs):
        where = f"inputs[{i}]"
        name = tensor.get("name") if isinstance(tensor, dict) else None
        if name not in wanted:
            raise OipError(400, f"{where} is not a tensor named question or context (got name {str(name)[:40]!r})")
        if name in texts:
            raise OipError(400, f"input {name!r} is given twice")
        texts[name] = _texts(tensor, name, where)
    for name in wanted:
        if name not in texts:
            raise OipError(400, f"input {name!r} is missing; the model takes question and context (BYTES, [B, 1])")
    questions, contexts = texts["question"], texts["context"]
    if len(questions) != len(contexts):
        raise OipError(400, f"inputs question and context have different batch sizes ({len(questions)} and {len(contexts)})")
    if not questions:
        raise OipError(400, "the inputs hold no rows (batch size 0); send at least one question")
    if len(questions) > max_items:
        raise OipError(413, f"the inputs hold {len(questions)} questions, more than the server queues ({max_items}); split them")
    return InferRequest(questions, contexts, _requested_outputs(data.get("outputs")), request_id)


def output_columns(rows: list[dict]) -> dict[str, list]:
    """The output tensors' elements from answer rows (``{"answer", "start", "end", "score"}``)."""
    return {"answer": [r["answer"] for r in rows], "start": [int(r["start"]) for r in rows],
            "end": [int(r["end"]) for r in rows],
            "score": [NO_SCORE if r["score"] is None else float(r["score"]) for r in rows]}


def infer_response(model_name: str, rows: list[dict], request: InferRequest) -> dict:
    """The ``/infer`` response body for the answers ``rows`` of ``request``."""
    columns, types = output_columns(rows), dict(OUTPUTS)
    body = {"model_name": model_name, "model_version": MODEL_VERSION,
            "outputs": [{"name": name, "datatype": types[name], "shape": [len(rows), 1], "data": columns[name]}
                        for name in request.outputs]}
    if request.id is not None:
        body["id"] = request.id
    return body


def model_metadata(model_name: str, platform: str) -> dict:
    """``GET /v2/models/NAME``: the name, versions, platform and the tensors (``-1``: any batch size)."""
    return {"name": model_name, "versions": [MODEL_VERSION], "platform": platform,
            "inputs": [{"name": n, "datatype": t, "shape": [-1, 1]} for n, t in INPUTS],
            "outputs": [{"name": n, "datatype": t, "shape": [-1, 1]} for n, t in OUTPUTS]}


@dataclass(frozen=True)
class OipAnswer:
    answer: str
    start: int
    end: int
    score: float


def infer_answers(url: str, model: str, pairs: list[tuple[str, str]], *, protocol: str = "http",
                  headers: dict | None = None) -> list[OipAnswer]:
    """Ask ``model`` at ``url`` (``host:port``) the ``(question, context)`` pairs through ``tritonclient``.

    ``protocol`` is ``http`` or ``grpc``. The same call works against ``kdtool serve`` (HTTP), Triton and
    KServe: over HTTP the tensors go as JSON (tritonclient's default binary extension is Triton's own).
    """
    import numpy as np

    if protocol == "http":
        import tritonclient.http as client_lib
    elif protocol == "grpc":
        import tritonclient.grpc as client_lib
    else:
        raise ValueError(f"protocol must be http or grpc, got {protocol!r}")
    json_only = {"binary_data": False} if protocol == "http" else {}
    client = client_lib.InferenceServerClient(url=url)
    try:
        inputs = []
        for (name, datatype), column in zip(INPUTS, zip(*pairs, strict=True), strict=True):
            tensor = client_lib.InferInput(name, [len(pairs), 1], datatype)
            tensor.set_data_from_numpy(np.array([[text.encode("utf-8")] for text in column], dtype=object), **json_only)
            inputs.append(tensor)
        outputs = [client_lib.InferRequestedOutput(name, **json_only) for name, _ in OUTPUTS]
        result = client.infer(model, inputs=inputs, outputs=outputs, headers=headers)
        columns = {name: result.as_numpy(name).reshape(-1) for name, _ in OUTPUTS}
    finally:
        client.close()
    return [OipAnswer(answer=(a.decode("utf-8") if isinstance(a, bytes) else str(a)), start=int(s), end=int(e),
                      score=float(sc))
            for a, s, e, sc in zip(columns["answer"], columns["start"], columns["end"], columns["score"], strict=True)]
