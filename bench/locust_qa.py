"""The locust user of bench/serve_compare.py: one question per request, the next as soon as the answer is back.

Environment (set by serve_compare.py): ``QA_QUESTIONS`` (a JSON file of ``[[question, context], ...]``),
``QA_ROUTE`` (``v1``: kdtool serve's ``POST /v1/answer``; ``v2``: the Open Inference Protocol's
``POST /v2/models/QA_MODEL/infer``, which Triton and kdtool serve's /v2 routes both speak) and ``QA_MODEL``.
A reply counts as a failure unless it is 200 with an answer field.
"""

from __future__ import annotations

import itertools
import json
import os

from locust import FastHttpUser, task

from kdtool.serve.oip import INPUTS

QUESTIONS = json.loads(open(os.environ["QA_QUESTIONS"], encoding="utf-8").read())  # noqa: SIM115
ROUTE = os.environ.get("QA_ROUTE", "v2")
MODEL = os.environ.get("QA_MODEL", "kdtool_qa")
_next = itertools.count()


def oip_body(question: str, context: str) -> dict:
    """One question as an OIP JSON request: BYTES tensors of shape [1, 1] (kdtool.serve.oip's inputs)."""
    values = {"question": question, "context": context}
    return {"inputs": [{"name": name, "shape": [1, 1], "datatype": dtype, "data": [values[name]]} for name, dtype in INPUTS]}


class QAUser(FastHttpUser):
    @task
    def ask(self):
        question, context = QUESTIONS[next(_next) % len(QUESTIONS)]
        if ROUTE == "v1":
            path, body, name = "/v1/answer", {"question": question, "context": context}, "v1 answer"
        else:
            path, body, name = f"/v2/models/{MODEL}/infer", oip_body(question, context), "v2 infer"
        with self.client.post(path, json=body, name=name, catch_response=True) as reply:
            ok = reply.status_code == 200 and ("answer" in reply.text)
            if ok:
                reply.success()
            else:
                reply.failure(f"{reply.status_code}: {reply.text[:200]}")
