"""The most a server could gain over the sequential engine on this machine, measured without HTTP.

``kdtool serve``'s throughput target is a ratio to one in-process engine answering one question per
call. Whatever the HTTP layer does, its forward passes run on the same cores, so the ceiling of that
ratio is what the best in-process arrangement of the same engine reaches: batching several
questions per call, or several engine instances (one thread each) answering in parallel threads
(ONNX Runtime releases the GIL while it runs). This script measures those arrangements on the same
real questions, interleaved over ``--rounds`` so that drift hits them alike, and prints JSON with
each one's questions/s and its ratio to the sequential engine. The HTTP server, its client and the
load generator then only take from that ceiling.

    python bench/serve_ceiling.py BUNDLE --data dev.json [--questions 400] [--rounds 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

from harness import emit, load_questions, machine

# name -> (engine instances, threads per instance, questions per call); the first is the baseline
ARRANGEMENTS = {
    "sequential: 1 engine x all threads, 1 question per call": (1, None, 1),
    "batched: 1 engine x all threads, 4 questions per call": (1, None, 4),
    "instances: 2 engines x 1 thread, 1 question per call": (2, 1, 1),
    "instances + batches: 2 engines x 1 thread, 4 questions per call": (2, 1, 4),
}


def answer_all(engine, questions: list[dict], per_call: int) -> None:
    from kdtool.data import Example
    from kdtool.predict import PredictConfig, answer_questions

    config = PredictConfig(batch_size=per_call)
    for i in range(0, len(questions), per_call):
        chunk = questions[i:i + per_call]
        answer_questions(engine, [(Example(q["id"], q["question"], q["context"], ()), q["id"]) for q in chunk], config)


def measure(bundle: Path, questions: list[dict], instances: int, threads: int, per_call: int) -> float:
    """Questions per second of ``instances`` engines, each answering its share in its own thread."""
    from kdtool.engines import load_engine

    engines = [load_engine(bundle, device="cpu", threads=threads) for _ in range(instances)]
    try:
        for engine in engines:  # warm-up: first-run allocations out of the timing
            answer_all(engine, questions[:8], per_call)
        shares = [questions[i::instances] for i in range(instances)]
        workers = [threading.Thread(target=answer_all, args=(e, s, per_call)) for e, s in zip(engines, shares, strict=True)]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return len(questions) / (time.perf_counter() - t0)
    finally:
        for engine in engines:
            engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="SQuAD JSON whose questions are answered")
    parser.add_argument("--questions", type=int, default=400)
    parser.add_argument("--threads", type=int, default=2, help="threads of the one-engine arrangements (the cores)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    questions = load_questions(args.data, args.questions)
    before = machine()
    runs: dict[str, list[float]] = {name: [] for name in ARRANGEMENTS}
    for _ in range(args.rounds):
        for name, (instances, threads, per_call) in ARRANGEMENTS.items():
            runs[name].append(round(measure(args.bundle, questions, instances, threads or args.threads, per_call), 1))
    base = max(runs[next(iter(ARRANGEMENTS))])
    result = {
        "bench": "serve_ceiling", "bundle": str(args.bundle), "data": str(args.data), "questions": len(questions),
        "machine_before": before, "machine_after": machine(), "command": " ".join(sys.argv),
        "questions_per_s": runs,
        "ratio_to_sequential_best_round": {name: round(max(v) / base, 2) for name, v in runs.items()},
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
