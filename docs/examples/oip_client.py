"""Ask a kdtool QA model over the Open Inference Protocol: Triton (a ``kdtool triton`` repository), KServe, or
``kdtool serve``'s /v2 routes, with the same call (:func:`kdtool.serve.oip.infer_answers`, i.e. tritonclient).

    python docs/examples/oip_client.py 127.0.0.1:8000 kdtool_qa "¿Quién construyó el puente?" "En 1905, ..."
    python docs/examples/oip_client.py 127.0.0.1:8001 kdtool_qa --grpc --jsonl questions.jsonl

Prints one JSON answer per question: ``{"answer", "start", "end", "score"}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from kdtool.serve.oip import infer_answers


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url", help="host:port of the HTTP (or, with --grpc, the gRPC) endpoint")
    p.add_argument("model", help="model name, e.g. kdtool_qa")
    p.add_argument("question", nargs="?")
    p.add_argument("context", nargs="?")
    p.add_argument("--jsonl", help="a file of {\"question\", \"context\"} lines instead of one question")
    p.add_argument("--grpc", action="store_true", help="use gRPC instead of HTTP")
    args = p.parse_intermixed_args()  # options may follow the positionals
    if args.jsonl:
        with open(args.jsonl, encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        pairs = [(r["question"], r["context"]) for r in rows]
    elif args.question and args.context:
        pairs = [(args.question, args.context)]
    else:
        p.error("give QUESTION and CONTEXT, or --jsonl FILE")
    for answer in infer_answers(args.url, args.model, pairs, protocol="grpc" if args.grpc else "http"):
        print(json.dumps(asdict(answer), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
