"""The Open Inference Protocol (KServe v2) face of a kdtool QA model: ONE definition of its tensors.

A question-answering model served by kdtool, whether by ``kdtool serve`` (``/v2/models/NAME/infer``)
or by Triton Inference Server from a ``kdtool triton`` repository, takes and returns these tensors,
so one client (``tritonclient``, any KServe client, or :func:`infer_answers` below) works against
both. Every tensor carries a leading batch dimension and one element per question: shape ``[B, 1]``
(Triton's ``max_batch_size > 0`` form, with ``dims: [1]`` in ``config.pbtxt``).

inputs   ``question`` BYTES, ``context`` BYTES (UTF-8 text)
outputs  ``answer`` BYTES (``context[start:end]``, empty for no answer), ``start`` INT64 and ``end`` INT64
         (character offsets into the context, -1 for no answer), ``score`` FP32 (start + end logit)
"""

from __future__ import annotations

from dataclasses import dataclass

INPUTS: tuple[tuple[str, str], ...] = (("question", "BYTES"), ("context", "BYTES"))
OUTPUTS: tuple[tuple[str, str], ...] = (("answer", "BYTES"), ("start", "INT64"), ("end", "INT64"), ("score", "FP32"))
NUMPY_DTYPES = {"BYTES": object, "INT64": "int64", "FP32": "float32"}


@dataclass(frozen=True)
class OipAnswer:
    answer: str
    start: int
    end: int
    score: float


def infer_answers(url: str, model: str, pairs: list[tuple[str, str]], *, protocol: str = "http",
                  headers: dict | None = None) -> list[OipAnswer]:
    """Ask ``model`` at ``url`` (``host:port``) the ``(question, context)`` pairs through ``tritonclient``.

    ``protocol`` is ``http`` or ``grpc``. The same call works against ``kdtool serve``, Triton and KServe.
    """
    import numpy as np

    if protocol == "http":
        import tritonclient.http as client_lib
    elif protocol == "grpc":
        import tritonclient.grpc as client_lib
    else:
        raise ValueError(f"protocol must be http or grpc, got {protocol!r}")
    client = client_lib.InferenceServerClient(url=url)
    try:
        inputs = []
        for (name, datatype), column in zip(INPUTS, zip(*pairs, strict=True), strict=True):
            tensor = client_lib.InferInput(name, [len(pairs), 1], datatype)
            tensor.set_data_from_numpy(np.array([[text.encode("utf-8")] for text in column], dtype=object))
            inputs.append(tensor)
        outputs = [client_lib.InferRequestedOutput(name) for name, _ in OUTPUTS]
        result = client.infer(model, inputs=inputs, outputs=outputs, headers=headers)
        columns = {name: result.as_numpy(name).reshape(-1) for name, _ in OUTPUTS}
    finally:
        client.close()
    return [OipAnswer(answer=(a.decode("utf-8") if isinstance(a, bytes) else str(a)), start=int(s), end=int(e),
                      score=float(sc))
            for a, s, e, sc in zip(columns["answer"], columns["start"], columns["end"], columns["score"], strict=True)]
