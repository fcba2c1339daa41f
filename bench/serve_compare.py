"""``kdtool serve`` against Triton Inference Server on the same bundle, driven by locust (headless), in one run.

Starts both servers on loopback ports (``kdtool serve BUNDLE`` and the ``tritonserver`` of the nvidia-pytriton
wheel on a ``kdtool triton`` repository, python layout), then for each number of concurrent users (default
1, 4, 16) runs one locust row per server, interleaved (kdtool, Triton, kdtool, ...), each ``--seconds`` long:
one question per request, every user sending its next as soon as its answer is back. Each row: q/s, p50 and
p99 latency (locust's), requests and failures; per user count, the ratio Triton / kdtool serve. Both
servers use the same threads and the same windows per forward pass; both stay up throughout (the idle
one costs nothing measurable), and locust runs on the same cores as the servers.

kdtool serve is asked on ``/v1/answer`` by default; ``--serve-route v2`` asks it on the Open Inference
Protocol (``/v2/models/NAME/infer``, the request Triton gets) once kdtool serve has those routes.

    python bench/serve_compare.py BUNDLE --data dev.json --seconds 20 --out bench/results/serve_compare_X.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from serve_load import load_questions, machine  # noqa: E402

from kdtool.deploy.tritonserver import (  # noqa: E402
    TritonServer,
    backend_directory,
    find_tritonserver,
    free_port,
    make_execution_env,
)


def start_kdtool_serve(bundle: Path, threads: int, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-c", "import sys; from kdtool.cli import main; sys.exit(main())", "serve", str(bundle),
           "--port", str(port), "--device", "cpu", "--threads", str(threads), "--no-access-log"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "wb"))  # noqa: SIM115
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"kdtool serve did not become ready (log: {log})")


def start_triton(bundle: Path, work: Path, threads: int) -> TritonServer:
    from kdtool.deploy.triton_repo import TritonRepoConfig, write_triton_repository

    env = make_execution_env(work / "env")
    repo = write_triton_repository(TritonRepoConfig(bundle, work / "repo", threads=threads, execution_env=env)).path
    server = TritonServer((repo,), backend_directory(find_tritonserver(), work / "backends"), log=work / "triton.log")
    server.start(timeout=240)
    if not server.wait_ready("kdtool_qa", timeout=60):
        raise SystemExit(f"Triton's model did not become ready: {server.model_states()} (log: {server.log})")
    return server


def locust_row(host: str, route: str, users: int, seconds: int, questions: Path, work: Path, tag: str) -> dict:
    """One headless locust run; its aggregated stats."""
    prefix = work / tag
    env = {**os.environ, "QA_QUESTIONS": str(questions), "QA_ROUTE": route, "QA_MODEL": "kdtool_qa"}
    cmd = [sys.executable, "-m", "locust", "-f", str(ROOT / "locust_qa.py"), "--headless", "--host", host,
           "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--csv", str(prefix), "--only-summary",
           "--stop-timeout", "10", "--loglevel", "ERROR"]
    subprocess.run(cmd, env=env, check=False, stdout=subprocess.DEVNULL, stderr=open(work / f"{tag}.log", "wb"))  # noqa: SIM115
    with open(f"{prefix}_stats.csv", encoding="utf-8") as fh:
        total = next(r for r in csv.DictReader(fh) if r["Name"] == "Aggregated")
    requests, failures = int(total["Request Count"]), int(total["Failure Count"])
    return {"users": users, "requests": requests, "failures": failures,
            "qps": round((requests - failures) / seconds, 2), "p50_ms": float(total["50%"]), "p99_ms": float(total["99%"])}


def compare(rows: list[dict]) -> list[dict]:
    by = {(r["server"], r["users"]): r for r in rows}
    out = []
    for users in sorted({r["users"] for r in rows}):
        k, t = by.get(("kdtool serve", users)), by.get(("triton", users))
        if k and t and k["qps"] and k["p50_ms"]:
            out.append({"users": users, "qps_triton_over_kdtool": round(t["qps"] / k["qps"], 2),
                        "p50_triton_over_kdtool": round(t["p50_ms"] / k["p50_ms"], 2),
                        "p99_triton_over_kdtool": round(t["p99_ms"] / k["p99_ms"], 2) if k["p99_ms"] else None})
    return out


def markdown(result: dict) -> str:
    lines = ["| users | server | q/s | p50 ms | p99 ms | requests | errors |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['users']} | {r['server']} | {r['qps']} | {r['p50_ms']:g} | {r['p99_ms']:g} | {r['requests']} | "
              f"{r['failures']} |" for r in result["rows"]]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle", type=Path)
    p.add_argument("--data", type=Path, required=True, help="SQuAD JSON whose questions are asked")
    p.add_argument("--questions", type=int, default=200)
    p.add_argument("--users", default="1,4,16")
    p.add_argument("--seconds", type=int, default=20)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="ONNX Runtime threads of each server's engine")
    p.add_argument("--serve-route", choices=("v1", "v2"), default="v1", help="kdtool serve's route (v2: OIP)")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--keep", action="store_true", help="keep the work directory (repository, logs, locust CSVs)")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kdtool-serve-compare-"))
    questions = work / "questions.json"
    questions.write_text(json.dumps([[q["question"], q["context"]] for q in load_questions(args.data, args.questions)],
                                    ensure_ascii=False), encoding="utf-8")
    result = {"machine": machine(), "bundle": str(args.bundle), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "settings": {"seconds": args.seconds, "threads": args.threads, "serve_route": args.serve_route,
                           "questions": args.questions, "load_generator": "locust headless (FastHttpUser), one question "
                           "per request, closed loop"}, "rows": []}
    proc, serve_url = start_kdtool_serve(args.bundle, args.threads, work / "serve.log")
    triton = None
    try:
        triton = start_triton(args.bundle, work, args.threads)
        targets = [("kdtool serve", serve_url, args.serve_route), ("triton", f"http://{triton.http}", "v2")]
        for users in (int(u) for u in args.users.split(",")):
            for server, host, route in targets:
                row = locust_row(host, route, users, args.seconds, questions, work, f"{server.split()[0]}_{users}")
                result["rows"].append({"server": server, **row})
                print(json.dumps(result["rows"][-1]), file=sys.stderr, flush=True)
    finally:
        proc.terminate()
        if triton:
            triton.stop()
        proc.wait(timeout=60)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    result["ratios"] = compare(result["rows"])
    result["markdown"] = markdown(result)
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
