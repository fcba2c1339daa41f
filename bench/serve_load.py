"""Closed-loop load on ``kdtool serve`` over localhost, against one in-process engine answering sequentially.

Starts ``kdtool serve BUNDLE`` as a real subprocess on a free loopback port, then for each number
of concurrent clients (default 1, 4, 16, 64) runs a closed loop (every client sends its next
question as soon as its previous answer arrives; one question per request; each client's first
request, which opens its connection, is not timed) until ``--requests``
answers or ``--seconds`` have passed, whichever is first. Each row: throughput (questions/s),
p50/p90/p99 latency, status counts (errors), the batch-size distribution the server's /metrics
recorded during that row, and the server's peak RSS. The baseline is the same questions through
one in-process engine (the loader ``kdtool answer`` uses), one question per call, measured before
and after the server rows (the machine is shared: both are reported). Last, ``--rss-requests``
requests at 16 clients with the server's RSS read after the first 1000 and at the end.

Prints JSON (and writes it with ``--out``). Targets from the issue are evaluated in ``targets``.

    flock /tmp/kdtool-bench.lock python bench/serve_load.py /tmp/serve-demo/bundle-int8 \\
        --data /tmp/serve-demo/data/dev.json --out bench/results/serve_load_demo.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
from harness import emit, load_questions, machine, rss_mb


def percentiles(ms: list[float]) -> dict:
    if not ms:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None}
    a = np.asarray(ms)
    return {f"p{q}_ms": round(float(np.percentile(a, q)), 2) for q in (50, 90, 99)}


def sequential(bundle: Path, questions: list[dict], threads: int, seconds: float, limit: int) -> dict:
    """The same questions through one in-process engine, one question per call."""
    from kdtool.data import Example
    from kdtool.engines import load_engine
    from kdtool.predict import PredictConfig, answer_questions

    engine = load_engine(bundle, device="cpu", threads=threads)
    config = PredictConfig(batch_size=1)
    answer_questions(engine, [(Example("w", questions[0]["question"], questions[0]["context"], ()), "w")], config)
    ms, t0 = [], time.perf_counter()
    for i in range(limit):
        q = questions[i % len(questions)]
        t = time.perf_counter()
        answer_questions(engine, [(Example(q["id"], q["question"], q["context"], ()), q["id"])], config)
        ms.append((time.perf_counter() - t) * 1000)
        if time.perf_counter() - t0 > seconds:
            break
    elapsed = time.perf_counter() - t0
    engine.close()
    return {"questions": len(ms), "seconds": round(elapsed, 2), "questions_per_s": round(len(ms) / elapsed, 2),
            **percentiles(ms)}


def metrics_text(url: str) -> str:
    import httpx

    return httpx.get(url + "/metrics").text


def batch_histogram(text: str) -> dict[str, float]:
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r'kdtool_serve_batch_windows_bucket\{le="([^"]+)"\} (\S+)', text)}


def batch_distribution(before: str, after: str) -> dict:
    """Batches per size bucket during a row (cumulative buckets turned into counts), and the mean size."""
    b, a = batch_histogram(before), batch_histogram(after)
    counts, prev = {}, 0.0
    for le in sorted(a, key=lambda k: float(k)):
        cum = a[le] - b.get(le, 0.0)
        if cum - prev:
            counts[le] = int(cum - prev)
        prev = cum
    total_sum = [float(re.search(r"kdtool_serve_batch_windows_sum (\S+)", t).group(1)) for t in (before, after)]
    n = a.get("+Inf", 0) - b.get("+Inf", 0)
    return {"batches": int(n), "by_size_le": counts,
            "mean_windows": round((total_sum[1] - total_sum[0]) / n, 2) if n else None}


async def closed_loop(url: str, questions: list[dict], clients: int, max_requests: int, seconds: float,
                      progress=None, timed_from=None) -> dict:
    """One row; ``timed_from`` (if given) is called once the connections are open, before the timed loop, and
    what it returns is the row's ``"at_start"``."""
    import httpx

    lat, status, sent, done = [], {}, 0, 0
    deadline = 0.0  # set once the connections are open

    async def client(c: httpx.AsyncClient, k: int):
        nonlocal sent, done
        while sent < max_requests and time.perf_counter() < deadline:
            i = sent
            sent += 1
            q = questions[i % len(questions)]
            t = time.perf_counter()
            try:
                r = await c.post(url + "/v1/answer", json=dict(q, id=f"{q['id']}#{i}"))
                code = r.status_code
                if code == 200 and r.json()["id"] != f"{q['id']}#{i}":
                    code = "mixed-up"
            except httpx.HTTPError as err:
                code = type(err).__name__
            if code == 200:
                lat.append((time.perf_counter() - t) * 1000)
            status[str(code)] = status.get(str(code), 0) + 1
            done += 1
            if progress:
                progress(done)

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as c:
        # one untimed request per client first, all at once: it opens that client's keep-alive connection, so
        # the row times answers, not TCP handshakes and the server's accept of a new connection
        q = questions[0]
        await asyncio.gather(*(c.post(url + "/v1/answer", json=dict(q, id=f"warm-up#{k}")) for k in range(clients)))
        at_start = await asyncio.to_thread(timed_from) if timed_from else None
        deadline = time.perf_counter() + seconds
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c, k) for k in range(clients)))
        elapsed = time.perf_counter() - t0
    ok = status.get("200", 0)
    return {"clients": clients, "requests": sum(status.values()), "seconds": round(elapsed, 2),
            "questions_per_s": round(ok / elapsed, 2), **percentiles(lat),
            "status": status, "errors": sum(v for k, v in status.items() if k != "200"), "at_start": at_start}


def start_server(bundle: Path, args, log: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-c", "import sys; from kdtool.cli import main; sys.exit(main())", "serve", str(bundle),
           "--port", str(port), "--device", "cpu", "--threads", str(max(1, args.threads // args.instances)),
           "--instances", str(args.instances), "--max-wait-ms", str(args.max_wait_ms),
           "--max-queue", str(args.max_queue), "--no-access-log"]
    cmd += ["--max-batch-size", str(args.max_batch_size)] if args.max_batch_size else []
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "w"),
                            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    url = f"http://127.0.0.1:{port}"
    for _ in range(1200):
        if proc.poll() is not None:
            raise SystemExit(f"server exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not become ready in 120 s")


def markdown_table(result: dict) -> str:
    """The rows of a result as a Markdown table (the README's)."""
    seq = [result[k]["questions_per_s"] for k in ("sequential_before", "sequential_after")]
    lines = ["| clients | questions/s | vs sequential | p50 ms | p90 ms | p99 ms | p99/p50 | mean batch | errors | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|",
             f"| sequential engine (before / after) | {seq[0]} / {seq[1]} | 1 | "
             f"{result['sequential_before']['p50_ms']} | {result['sequential_before']['p90_ms']} | "
             f"{result['sequential_before']['p99_ms']} | | 1 | | |"]
    for r in result["rows"]:
        lines.append(f"| {r['clients']} | {r['questions_per_s']} | {r['questions_per_s'] / max(seq):.2f}-"
                     f"{r['questions_per_s'] / min(seq):.2f}x | {r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} | "
                     f"{r['p99_over_p50']} | {r['batch']['mean_windows']} | {r['errors']} | {r['server_peak_rss_mb']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path, nargs="?")
    ap.add_argument("--table", type=Path, default=None, help="Print the Markdown table of a result JSON and exit.")
    ap.add_argument("--data", type=Path, default=None, help="SQuAD JSON whose questions are asked (e.g. a dev set).")
    ap.add_argument("--clients", default="1,4,16,64")
    ap.add_argument("--requests", type=int, default=2000, help="Most requests per client level.")
    ap.add_argument("--seconds", type=float, default=60, help="Most seconds per client level (and per baseline).")
    ap.add_argument("--rss-requests", type=int, default=10000, help="Requests of the RSS phase (0: skip it).")
    ap.add_argument("--threads", type=int, default=2, help="Threads of the sequential engine, and of the server's "
                    "engine (of each instance with --instances; default there: 2 / instances).")
    ap.add_argument("--instances", type=int, default=1, help="Engine instances of the server (kdtool serve --instances).")
    ap.add_argument("--max-batch-size", type=int, default=None, help="Default: the server's (4 on a CPU).")
    ap.add_argument("--max-wait-ms", type=float, default=0, help="The server's --max-wait-ms (its default: 0).")
    ap.add_argument("--max-queue", type=int, default=256)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.table:
        print(markdown_table(json.loads(args.table.read_text())))
        return
    if args.bundle is None or args.data is None:
        ap.error("give BUNDLE and --data (or --table RESULT.json)")
    questions = load_questions(args.data, 5000)
    result = {"bench": "serve_load", "bundle": str(args.bundle), "data": str(args.data), "questions": len(questions),
              "machine_before": machine(), "settings": {k: v for k, v in vars(args).items() if k not in ("out",)},
              "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
    for k in ("bundle", "data"):
        result["settings"][k] = str(result["settings"][k])
    result["sequential_before"] = sequential(args.bundle, questions, args.threads, args.seconds / 2, args.requests)
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"serve_load_{os.getpid()}.log"
    proc, url = start_server(args.bundle, args, log)
    rows = []
    try:
        result["server_rss_mb_ready"] = rss_mb(proc.pid)
        for clients in [int(c) for c in args.clients.split(",")]:
            # metrics read once the warm-up requests are answered: the row counts the timed batches only
            row = asyncio.run(closed_loop(url, questions, clients, args.requests, args.seconds,
                                          timed_from=partial(metrics_text, url)))
            row["batch"] = batch_distribution(row.pop("at_start"), metrics_text(url))
            row["server_peak_rss_mb"] = rss_mb(proc.pid, "VmHWM")
            row["p99_over_p50"] = round(row["p99_ms"] / row["p50_ms"], 2) if row["p50_ms"] else None
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
        if args.rss_requests:
            marks = {}

            def mark(done):
                if done == 1000:
                    marks["after_1k"] = rss_mb(proc.pid)

            row = asyncio.run(closed_loop(url, questions, 16, args.rss_requests, 10 * args.seconds, progress=mark))
            marks["after_all"] = rss_mb(proc.pid)
            result["rss_phase"] = {"clients": 16, "requests": row["requests"], "errors": row["errors"],
                                   "questions_per_s": row["questions_per_s"], "rss_mb_after_1k": marks.get("after_1k"),
                                   "rss_mb_at_end": marks["after_all"], "peak_rss_mb": rss_mb(proc.pid, "VmHWM")}
            if marks.get("after_1k"):
                result["rss_phase"]["growth_pct"] = round(100 * (marks["after_all"] / marks["after_1k"] - 1), 2)
    finally:
        proc.terminate()
        result["server_exit_code"] = proc.wait(timeout=120)
    result["rows"] = rows
    result["sequential_after"] = sequential(args.bundle, questions, args.threads, args.seconds / 2, args.requests)
    result["machine_after"] = machine()
    seq = min(result["sequential_before"]["questions_per_s"], result["sequential_after"]["questions_per_s"])
    seq_best = max(result["sequential_before"]["questions_per_s"], result["sequential_after"]["questions_per_s"])
    by = {r["clients"]: r for r in rows}
    targets = {}
    if 16 in by:
        targets["throughput_16_over_sequential"] = {"value_vs_best_baseline": round(by[16]["questions_per_s"] / seq_best, 2),
                                                    "value_vs_worst_baseline": round(by[16]["questions_per_s"] / seq, 2),
                                                    "target": ">= 2"}
    targets["p99_over_p50"] = {str(r["clients"]): r["p99_over_p50"] for r in rows} | {"target": "<= 3 below saturation"}
    targets["errors_below_queue_limit"] = {str(r["clients"]): r["errors"] for r in rows if r["clients"] <= args.max_queue}
    if "rss_phase" in result and "growth_pct" in result["rss_phase"]:
        targets["rss_growth_1k_to_end_pct"] = {"value": result["rss_phase"]["growth_pct"], "target": "<= 5",
                                               "requests": result["rss_phase"]["requests"]}
    result["targets"] = targets
    emit(result, args.out)
    print(markdown_table(result), file=sys.stderr)


if __name__ == "__main__":
    main()
