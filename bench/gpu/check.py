"""The GPU half of kdtool checked in one command (run through bench/gpu/check.sh; read README "Verifying on a GPU").

Steps, each a child process in its own process group with its own time limit, so a hang costs only that
step; a step that fails or times out is recorded with its error and the next one runs:

  0 setup       install the carried wheels and kdtool itself (--no-deps) into a temporary target that
                goes first on PYTHONPATH; print GPU, driver, CUDA, torch, triton, transformers versions
  1 gpu_tests   pytest -m gpu: the Triton kernel cases compiled and run against their references
  2 kernels     bench/kernels.py: fused attention-map losses (MSE, KL) fwd+bwd vs explicit PyTorch at
                batch 32, 16 heads, seq 384, head dims 32/64; fused_attention vs SDPA at batch 1/32, seq 128/384
  3 distill     bench/distill_step.py: one bf16 step at the paper's shapes, seed approach vs kdtool default
  4 profile     kdtool profile --device cuda: teacher and student, fp16/bf16 x sdpa/torch-triton,
                batch 1/32, seq 128/384, interleaved, CUDA events
  5 selftest    bench/gpu/selftest.py: the student exported FP32 and INT8 with --trt, and each bundle's self-test
                (kdtool verify --run) on ONNX Runtime CPU, ONNX Runtime CUDA and the TensorRT engine, where they open

Output (at most 8 files: the device tool returns no more): OUT/stepN_NAME.json per step (status, seconds,
command, error, output tail and the step's own JSON result), OUT/summary.json, OUT/check.log (every
step's full output). A summary table is printed last. Exit status 1 when any step failed or timed out.

``--cpu-dry-run`` runs the same steps on the CPU at tiny shapes (kernels under the Triton interpreter,
4 x 64 / 2 x 32 models): CI runs it so that a broken import or a typo fails here, not on the GPU machine.
Its numbers measure nothing. Budget: the GPU run stops starting steps once ``--budget`` seconds
(default 480, the issue's 8 minutes) are spent; each step's limit is cut to what is left.

Sizing (H200: ~790 TFLOP/s bf16 measured, ~4.3 TB/s copy; README "Verifying on a GPU" has the sums):
setup ~15 s, gpu_tests 30-60 s (~100 Triton compiles over 8 pytest-xdist workers), kernels 20-60 s
(autotuning; every call is a few ms at most), distill 35-45 s (two processes each creating RoBERTa-large
on the CPU and starting CUDA; a step is ~50 ms of GPU work), profile 55-70 s (saving the teacher, 8 model
loads, ~0.16 s per interleaved round): ~3.5 minutes expected, 8 at most.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from summary import format_summary, headline  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
WHEELS = REPO / "bench" / "gpu" / "wheels"
TAIL = 4000  # characters of a step's output kept in its JSON (the full output is in check.log)
VARIANTS = ("fp16:sdpa", "bf16:sdpa", "fp16:torch-triton", "bf16:torch-triton")
# name: (limit in seconds on the GPU, limit in the CPU dry run)
LIMITS = {"setup": (60, 240), "gpu_tests": (120, 180), "kernels": (100, 180), "distill": (100, 240), "profile": (100, 300),
          "selftest": (120, 300)}


def step_commands(name: str, dry: bool, py: str, site: Path, work: Path) -> tuple[list[list[str]], Path | None]:
    """The commands of one step (run in order, all within the step's limit) and the JSON file its last one writes."""
    result = work / f"{name}.json"
    if name == "gpu_tests":
        # on the GPU, pytest-xdist (on the image) spreads the ~100 Triton compiles over 8 workers
        workers = [] if dry or importlib.util.find_spec("xdist") is None else ["-n", "8"]
        return [[py, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider", *workers, "tests/"]], None
    if name == "kernels":
        shape = (["--device", "cpu", "--batch", "1", "--heads", "2", "--seq", "32", "--attention-shapes", "1x32,2x16",
                  "--warmup", "0", "--reps", "1"] if dry else ["--device", "cuda", "--warmup", "5", "--reps", "20"])
        return [[py, "bench/kernels.py", *shape, "--dtype", "float16", "--out", str(result)]], result
    if name == "distill":
        shape = ["--tiny", "--batch", "2", "--seq", "32", "--steps", "1"] if dry else ["--batch", "32", "--seq", "384",
                                                                                        "--steps", "3"]
        return [[py, "bench/distill_step.py", *shape, "--out", str(result)]], result
    if name == "profile":
        models = work / "models"
        shapes = (["--device", "cpu", "--threads", "1", "--batch-size", "1,2", "--seq-len", "16,32",
                   "--runs", "2", "--warmup", "1"]
                  if dry else ["--device", "cuda", "--batch-size", "1,32", "--seq-len", "128,384",
                               "--runs", "30", "--warmup", "5"])
        variants = [arg for v in VARIANTS for arg in ("--torch-variant", v)]
        return [[py, "bench/gpu/make_models.py", str(models), *(["--tiny"] if dry else [])],
                [str(site / "bin" / "kdtool"), "profile", str(models / "teacher"), str(models / "student"), *shapes,
                 *variants, "--json", str(result)]], result
    if name == "selftest":
        models = work / "models"
        make = [] if (models / "student").is_dir() else [[py, "bench/gpu/make_models.py", str(models),
                                                          *(["--tiny"] if dry else [])]]
        return [*make, [py, "bench/gpu/selftest.py", str(models), str(result), *(["--tiny"] if dry else [])]], result
    raise ValueError(name)


class Runner:
    """Runs commands with time limits, keeps the log, writes one JSON per step."""

    def __init__(self, out: Path, env: dict, budget: float, dry: bool):
        self.out, self.env, self.budget, self.dry = out, env, budget, dry
        self.started = time.monotonic()
        self.log = (out / "check.log").open("w", encoding="utf-8")
        self.records: list[dict] = []

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.started)

    def say(self, text: str) -> None:
        print(text, flush=True)
        self.log.write(text + "\n")
        self.log.flush()

    def run(self, command: list[str], limit: float) -> tuple[int | None, str, float]:
        """(exit status or None on timeout, combined output, seconds)."""
        self.say(f"$ {' '.join(command)}")
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(command, cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, errors="replace", start_new_session=True)
        except OSError as err:
            return 127, f"{type(err).__name__}: {err}", 0.0
        try:
            output, _ = proc.communicate(timeout=max(limit, 1))
            rc = proc.returncode
        except subprocess.TimeoutExpired:
            self._kill(proc)
            output, _ = proc.communicate()
            rc = None
        self.log.write(output)
        self.log.flush()
        return rc, output, time.monotonic() - t0

    @staticmethod
    def _kill(proc) -> None:
        """The whole process group (pytest workers, bench subprocesses): TERM, then KILL after 5 s."""
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def step(self, number: int, name: str, commands: list[list[str]], result_file: Path | None, limit: float,
             annotate=None) -> dict:
        """Run ``commands`` within ``limit`` seconds; ``annotate(record, output)`` may add to an ok record."""
        record = {"step": number, "name": name, "status": "ok", "seconds": 0.0, "limit_seconds": round(limit, 1),
                  "commands": [" ".join(c) for c in commands], "error": None, "output_tail": "", "result": None}
        self.say(f"\n=== step {number}: {name} (limit {limit:.0f} s) ===")
        deadline = time.monotonic() + limit
        outputs = []
        for command in commands:
            rc, output, seconds = self.run(command, deadline - time.monotonic())
            outputs.append(output)
            record["seconds"] = round(record["seconds"] + seconds, 1)
            if rc is None:
                record.update(status="timeout", error=f"timed out after {limit:.0f} s in: {' '.join(command[:3])} ...")
                break
            if rc != 0:
                lines = [x for x in output.strip().splitlines() if x.strip()]
                record.update(status="failed", error=f"exit {rc}: {lines[-1][:500] if lines else '(no output)'}")
                break
        record["output_tail"] = "".join(outputs)[-TAIL:]
        if record["status"] == "ok" and result_file is not None:
            try:
                record["result"] = json.loads(result_file.read_text())
            except (OSError, ValueError) as err:
                record.update(status="failed", error=f"no JSON result at {result_file}: {err}")
        if record["status"] == "ok" and annotate is not None:
            annotate(record, "".join(outputs))
        return self.finish(record)

    def skip(self, number: int, name: str, reason: str) -> dict:
        self.say(f"\n=== step {number}: {name}: skipped ({reason}) ===")
        return self.finish({"step": number, "name": name, "status": "skipped", "seconds": 0.0, "error": None,
                            "reason": reason, "result": None})

    def finish(self, record: dict) -> dict:
        record["headline"] = headline(record)
        (self.out / f"step{record['step']}_{record['name']}.json").write_text(json.dumps(record, indent=2) + "\n")
        self.records.append(record)
        if record["status"] not in ("ok", "skipped"):
            detail = record.get("error") or record.get("reason")
            self.say(f"--- step {record['step']} {record['name']}: {record['status']}: {detail}")
        return record


def check_tests(record: dict, output: str, dry: bool) -> None:
    """pytest's counts; on a GPU, no gpu test having run is a failure (they all skipped)."""
    import re

    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?)", output)}
    record["result"] = {"counts": counts, "summary": output.strip().splitlines()[-1] if output.strip() else ""}
    if not dry and counts.get("passed", 0) == 0:
        record.update(status="failed", error=f"no gpu test ran: {record['result']['summary']}")


ENVIRONMENT = r"""
import importlib.metadata, json, os, platform, subprocess, sys  # argv[1]: where to write the JSON
info = {"python": platform.python_version(), "executable": sys.executable}
for name in ("torch", "triton", "transformers", "tokenizers", "huggingface_hub", "optimum", "onnx", "onnxruntime", "kdtool"):
    try:
        module = __import__(name)
        folder = os.path.dirname(list(module.__path__)[0])  # namespace packages (optimum) have no __file__
        version = getattr(module, "__version__", None) or importlib.metadata.version(name)
        info[name] = f"{version}  ({folder})"
    except Exception as err:
        info[name] = f"not importable: {type(err).__name__}: {err}"
import torch
info["cuda_available"] = torch.cuda.is_available()
info["torch_cuda"] = torch.version.cuda
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(gpu=p.name, capability=f"{p.major}.{p.minor}", multiprocessors=p.multi_processor_count,
                memory_gib=round(p.total_memory / 2**30, 1))
try:
    info["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm",
                                         "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
except (OSError, subprocess.SubprocessError) as err:
    info["nvidia_smi"] = f"unavailable: {type(err).__name__}"
print(json.dumps(info, indent=2))
open(sys.argv[1], "w").write(json.dumps(info))
"""


def pinned_version(name: str) -> str | None:
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.lower().startswith(f"{name}=="):
            return line.split("==", 1)[1].strip()
    return None


def setup(runner: Runner, py: str, site: Path, wheels: Path, limit: float) -> dict:
    """Step 0: the wheels and kdtool into ``site``, then the versions as the later steps will see them."""
    pip = [py, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir",
           "--disable-pip-version-check", "--target", str(site)]
    found = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
    if not found and not runner.dry:
        runner.say(f"no wheels in {wheels}: run bench/gpu/wheels.sh where pip can download and carry that folder; "
                   "going on with the image's packages (transformers 5.x there is not what kdtool pins)")
    # one pip call: a second --target install into the same folder skips folders that exist (bin/), losing bin/kdtool
    commands = [[*pip, "--upgrade", "--no-build-isolation", *map(str, found), str(REPO)]]
    versions = site.parent / "environment.json"
    commands.append([py, "-c", ENVIRONMENT, str(versions)])
    wheel_names = [w.name for w in found] or ["none: the dry run uses this environment's packages" if runner.dry else "none"]

    def annotate(record: dict, _output: str) -> None:
        record["result"]["wheels"] = wheel_names
        pin = pinned_version("transformers")
        if not str(record["result"].get("transformers", "")).startswith(f"{pin} "):
            record["result"]["warning"] = f"transformers is {record['result'].get('transformers')}, kdtool pins {pin}"
            runner.say(f"WARNING: {record['result']['warning']}: the numbers below are not kdtool's configuration")
        if not (site / "bin" / "kdtool").is_file():  # step 4 runs the kdtool command itself
            record.update(status="failed", error=f"pip put no bin/kdtool into {site}")

    return runner.step(0, "setup", commands, versions, limit, annotate)


def main() -> int:
    ap = argparse.ArgumentParser(description="Run kdtool's GPU checks (see bench/gpu/check.py's docstring).")
    ap.add_argument("--out", type=Path, default=os.environ.get("OUT") or None,
                    help="output folder (default: the OUT environment variable)")
    ap.add_argument("--cpu-dry-run", action="store_true", help="tiny shapes on the CPU: checks the script, measures nothing")
    ap.add_argument("--steps", default="1,2,3,4,5", help="which of steps 1-5 to run, e.g. 2,4; 0: setup only (it always runs)")
    ap.add_argument("--budget", type=float, default=480.0, help="seconds for the whole run (GPU); ignored by the dry run")
    ap.add_argument("--wheels", type=Path, default=WHEELS, help="folder of wheels made by bench/gpu/wheels.sh")
    args = ap.parse_args()
    if args.out is None:
        ap.error("give --out DIR or set OUT")
    wanted = {s.strip() for s in args.steps.split(",") if s.strip()}
    if not wanted <= {"0", "1", "2", "3", "4", "5"}:
        ap.error(f"--steps takes numbers 0-5, got {args.steps!r}")
    args.out.mkdir(parents=True, exist_ok=True)

    dry, py = args.cpu_dry_run, sys.executable
    work = Path(tempfile.mkdtemp(prefix="kdtool-gpu-check-"))
    site = work / "site"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("TRITON_INTERPRET", None)
    runner = Runner(args.out, env, budget=float("inf") if dry else args.budget, dry=dry)
    runner.say(f"kdtool GPU check: {'CPU DRY RUN (tiny shapes, nothing measured)' if dry else 'GPU run'}; out {args.out}; "
               f"work {work}; budget {'none' if dry else f'{args.budget:.0f} s'}")
    try:
        record = setup(runner, py, site, args.wheels, min(LIMITS["setup"][dry], runner.left()))
        names = {1: "gpu_tests", 2: "kernels", 3: "distill", 4: "profile", 5: "selftest"}
        for number, name in names.items():
            if str(number) not in wanted:
                runner.skip(number, name, "not in --steps")
            elif record["status"] != "ok":
                runner.skip(number, name, "setup failed (step 0 says why)")
            elif runner.left() < 20:
                runner.skip(number, name, f"the {args.budget:.0f} s budget is spent")
            else:
                commands, result = step_commands(name, dry, py, site, work)
                annotate = functools.partial(check_tests, dry=dry) if name == "gpu_tests" else None
                runner.step(number, name, commands, result, min(LIMITS[name][dry], runner.left() - 5), annotate)
    finally:
        total = time.monotonic() - runner.started
        summary = {"mode": "cpu-dry-run" if dry else "gpu", "seconds": round(total, 1),
                   "budget_seconds": None if dry else args.budget,
                   "steps": [{k: r.get(k) for k in ("step", "name", "status", "seconds", "error", "reason", "headline")}
                             for r in runner.records]}
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        runner.say("\n" + format_summary(summary))
        runner.log.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r["status"] in ("ok", "skipped") for r in runner.records) else 1


if __name__ == "__main__":
    sys.exit(main())
