"""Ordinary requests to ``kdtool serve`` with and without a slowloris attack, in one interleaved run.

Starts ``kdtool serve BUNDLE`` as a real subprocess on a free loopback port with its file-descriptor
limit set to ``--nofile`` (1024, as in the issue's report), then runs three phases of ``--seconds``
each: ordinary load alone, ordinary load while an attacker holds ``--slow`` connections that each send
one header byte every ``--drip`` seconds (reconnecting whenever the server closes one, as a real
attacker would), and ordinary load alone again. The ordinary load is ``--clients`` closed-loop clients
(httpx, keep-alive), one question per request. A last phase floods ``--flood`` slow connections, more
than the descriptor limit, to check that ordinary requests are still answered. Each phase reports
p50/p99 latency, questions/s and errors; the attack phases also report how many slow connections the
attacker held on average, its reconnects, and the server's own count of connections it closed
(``kdtool_serve_connections_closed_total``). Prints JSON; never asserts a time.

    python bench/serve_slowloris.py BUNDLE                # a real bundle
    python bench/serve_slowloris.py --tiny                # the tests' tiny random model (HTTP-bound)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
QUESTION = {"question": "¿Quién construyó el puente?", "context": "En 1905, María López construyó un puente en Sevilla."}


def machine() -> dict:
    info = Path("/proc/cpuinfo").read_text()
    name = re.search(r"model name\s*:\s*(.*)", info)
    flags = set(re.search(r"flags\s*:\s*(.*)", info).group(1).split())
    return {"cpu": name.group(1) if name else "?", "cores": os.cpu_count(), "avx512_vnni": "avx512_vnni" in flags,
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def tiny_bundle(tmp: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    import tiny

    from kdtool.export.config import ExportConfig
    from kdtool.export.pipeline import export_model
    from kdtool.tokenizer_training import train_tokenizer

    squad = tiny.tiny_squad()
    tokenizer = train_tokenizer(tiny.corpus_texts(squad) * 3, "bpe", vocab_size=600)
    model = tiny.tiny_qa_model(tmp / "model", tokenizer, "roberta")
    return export_model(ExportConfig(model, tmp / "bundle"))


def start_server(bundle: Path, nofile: int) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def limit_fds():
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    kdtool = [sys.executable, "-c", "import sys; from kdtool.cli import main; sys.exit(main())"]
    proc = subprocess.Popen([*kdtool, "serve", str(bundle), "--port", str(port),
                             "--device", "cpu", "--no-access-log"], preexec_fn=limit_fds,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc, port
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server did not start: {proc.stderr.read().decode()[-2000:]}")


class Slowloris(threading.Thread):
    """Holds ``n`` connections, each sending one byte of a never-ending header every ``drip`` seconds."""

    def __init__(self, port: int, n: int, drip: float):
        super().__init__(daemon=True)
        self.port, self.n, self.drip = port, n, drip
        self.stop, self.socks, self.reconnects, self.held = threading.Event(), [], 0, []

    def _connect(self):
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-a: ")
            s.setblocking(False)
            return s
        except OSError:
            return None

    def run(self):
        while not self.stop.is_set():
            self.socks = [s for s in self.socks if s is not None]
            while len(self.socks) < self.n and not self.stop.is_set():
                self.socks.append(self._connect())
                self.reconnects += 1
            self.held.append(sum(s is not None for s in self.socks))
            for s in list(self.socks):
                try:
                    try:
                        if not s.recv(4096):  # the server closed it (a 408, or nothing)
                            raise ConnectionError
                    except BlockingIOError:
                        pass  # still open, nothing said
                    s.send(b"a")
                except (OSError, ConnectionError):
                    s.close()
                    self.socks[self.socks.index(s)] = None
            self.stop.wait(self.drip)
        for s in self.socks:
            if s:
                s.close()


def ordinary_load(port: int, clients: int, seconds: float) -> dict:
    latencies, errors, stop = [], [], time.time() + seconds

    def client():
        with httpx.Client(timeout=30) as c:
            while time.time() < stop:
                t0 = time.perf_counter()
                try:
                    r = c.post(f"http://127.0.0.1:{port}/v1/answer", json=QUESTION)
                    (latencies.append((time.perf_counter() - t0) * 1000) if r.status_code == 200
                     else errors.append(r.status_code))
                except httpx.HTTPError as err:
                    errors.append(type(err).__name__)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a = np.asarray(latencies or [np.nan])
    return {"answered": len(latencies), "questions_per_s": round(len(latencies) / seconds, 1),
            "p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
            "errors": len(errors), "error_kinds": sorted({str(e) for e in errors})}


def closed_counts(port: int) -> dict:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r'kdtool_serve_connections_closed_total\{reason="(\w+)"\} (\S+)', text)}


def under_attack(port: int, slow: int, drip: float, clients: int, seconds: float) -> dict:
    before = closed_counts(port)
    attacker = Slowloris(port, slow, drip)
    attacker.start()
    time.sleep(min(3.0, seconds / 4))  # let the attacker open its connections first
    row = ordinary_load(port, clients, seconds)
    attacker.stop.set()
    attacker.join()
    after = closed_counts(port)
    row.update(attacker_sockets_open_mean=round(float(np.mean(attacker.held)), 1) if attacker.held else 0,
               attacker_connects=attacker.reconnects,
               server_closed={k: after.get(k, 0) - before.get(k, 0) for k in after})
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", nargs="?", type=Path)
    ap.add_argument("--tiny", action="store_true", help="export the tests' tiny random model and use it")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--slow", type=int, default=300)
    ap.add_argument("--drip", type=float, default=1.0, help="seconds between the slow connections' bytes")
    ap.add_argument("--flood", type=int, default=1100)
    ap.add_argument("--nofile", type=int, default=1024)
    args = ap.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = tiny_bundle(Path(tmp)) if args.tiny else args.bundle
        if bundle is None:
            raise SystemExit("give BUNDLE or --tiny")
        proc, port = start_server(bundle, args.nofile)
        try:
            rows = {"ordinary_alone_before": ordinary_load(port, args.clients, args.seconds),
                    f"ordinary_with_{args.slow}_slowloris": under_attack(port, args.slow, args.drip, args.clients,
                                                                         args.seconds),
                    "ordinary_alone_after": ordinary_load(port, args.clients, args.seconds),
                    f"ordinary_with_{args.flood}_slowloris_over_the_fd_limit": under_attack(
                        port, args.flood, args.drip, args.clients, args.seconds)}
            alive = proc.poll() is None
        finally:
            proc.terminate()
            proc.wait(60)
    before, attack = rows["ordinary_alone_before"], rows[f"ordinary_with_{args.slow}_slowloris"]
    print(json.dumps({"machine": machine(), "bundle": "tiny random (HTTP-bound)" if args.tiny else str(bundle),
                      "settings": {k: v for k, v in vars(args).items() if k not in ("bundle", "tiny")},
                      "server_defaults": {"header_timeout_s": 5, "max_header_bytes": 16384,
                                          "max_connections": min(1024, args.nofile - 64)},
                      "rows": rows, "server_alive_at_end": alive,
                      "p99_ratio_attack_over_alone": round(attack["p99_ms"] / before["p99_ms"], 2)
                      if before["p99_ms"] else None}, indent=2))


if __name__ == "__main__":
    main()
