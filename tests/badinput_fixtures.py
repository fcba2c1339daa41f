"""Helpers of the bad-input, interrupt, crash and security tests: running kdtool (in process or as a
real subprocess), the one-line error check, and broken variants of the tiny real models."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from click.testing import CliRunner

from kdtool.cli import main

KDTOOL = [sys.executable, "-c", "import sys; from kdtool.cli import main; sys.exit(main())"]
CONTEXT = "En 1905, María López construyó un puente en Sevilla. Años después, la obra fue visitada por viajeros."


def run(*args):
    """``kdtool ARGS`` in this process (stderr kept apart from stdout)."""
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, code: int, *needles: str) -> str:
    """Exit ``code``, exactly one non-empty stderr line starting ``Error:`` holding every needle, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.output, repr(result.exception))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def killed_writer(code: str, env: dict | None = None) -> str:
    """Run ``code`` in a real Python process until it prints a line (its output half-written), SIGKILL it
    there, and return the line: what a run killed by the OOM killer or a power cut leaves behind."""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    try:
        line = proc.stdout.readline().strip()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    return line


SCRATCH_WRITER = "import time; from kdtool.atomic import scratch_dir\nwith scratch_dir('{}') as d:\n" \
                 "    print(d, flush=True); time.sleep(600)"
PARTIAL_WRITER = "import sys, time; from kdtool.atomic import atomic_directory\n" \
                 "with atomic_directory(sys.argv[1] if len(sys.argv) > 1 else '{}', kind='bundle') as d:\n" \
                 "    (d / 'model.onnx').write_text('half'); print(d, flush=True); time.sleep(600)"


def copy_model(src: Path, dst: Path, *, without=(), extra: dict | None = None) -> Path:
    """A copy of a model directory without some files and with ``extra`` {name: bytes or str} added."""
    dst.mkdir(parents=True)
    for f in Path(src).iterdir():
        if f.name not in without:
            shutil.copy2(f, dst / f.name)
    for name, data in (extra or {}).items():
        (dst / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    return dst


def squad(paragraphs: list[tuple[str, list[dict]]]) -> dict:
    """A SQuAD v1.1 object from ``[(context, qas), ...]``."""
    return {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": c, "qas": q} for c, q in paragraphs]}]}


def write_jsonl(path: Path, n: int, context: str = CONTEXT) -> Path:
    qs = ["¿Quién construyó un puente?", "¿En qué año?", "¿Dónde se construyó el puente?", "¿Quién visitó la obra?"]
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"q{i}", "question": qs[i % len(qs)], "context": context}, ensure_ascii=False) + "\n")
    return path


PAUSE_HOOK = Path(__file__).with_name("pause_hook")


def pause_at(task: str, flag: Path) -> dict:
    """Environment that holds a kdtool subprocess mid-work at task ``task`` (tests/pause_hook) and writes ``flag``."""
    path = os.pathsep.join(p for p in (str(PAUSE_HOOK), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "KDTOOL_TEST_PAUSE_TASK": task, "KDTOOL_TEST_PAUSED": str(flag)}


def _sigint_as_in_a_terminal() -> None:
    """In the child before exec: SIGINT at its default, as a foreground command in a terminal has it.

    A test run started in the background (``nohup ... &``, a script's ``cmd &``) inherits SIGINT ignored, and
    Python keeps an ignored SIGINT ignored, so the Ctrl-C tests' commands would never see their signal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Proc:
    """A real ``kdtool`` subprocess whose stderr is collected by a thread (progress uses ``\\r``)."""

    def __init__(self, args, env: dict | None = None, **kw):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", **(env or {})}
        self.p = subprocess.Popen(KDTOOL + [str(a) for a in args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=env, preexec_fn=_sigint_as_in_a_terminal, **kw)
        self.err = b""
        self.out = b""
        self._t = [threading.Thread(target=self._pump, args=(self.p.stderr, "err"), daemon=True),
                   threading.Thread(target=self._pump, args=(self.p.stdout, "out"), daemon=True)]
        for t in self._t:
            t.start()

    def _pump(self, stream, name):
        while chunk := stream.read1(4096) if hasattr(stream, "read1") else stream.read(1):
            setattr(self, name, getattr(self, name) + chunk)

    def wait_for(self, predicate, timeout: float = 120.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if predicate():
                return
            if self.p.poll() is not None:
                raise AssertionError(f"kdtool ended (rc {self.p.returncode}) before the condition held:\n"
                                     f"{self.err.decode(errors='replace')[-2000:]}")
            time.sleep(0.05)
        self.kill()
        raise AssertionError(f"timed out waiting; stderr:\n{self.err.decode(errors='replace')[-2000:]}")

    def finish(self, timeout: float = 120.0) -> int:
        rc = self.p.wait(timeout=timeout)
        for t in self._t:
            t.join(timeout=10)
        return rc

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()

    @property
    def stderr(self) -> str:
        return self.err.decode("utf-8", errors="replace")

    @property
    def stdout(self) -> str:
        return self.out.decode("utf-8", errors="replace")
