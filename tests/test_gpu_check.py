"""bench/gpu/check.sh, the one command for the GPU machine: its CPU dry run end to end, and its step runner.

The dry run is what keeps the GPU script working between the rare GPU sessions: every step runs for real
on the CPU at tiny shapes (kernels under the Triton interpreter), so a broken import, a renamed option or
a typo in any step fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench" / "gpu"))

import check  # noqa: E402 - bench/gpu/check.py
from summary import format_summary, headline  # noqa: E402

STEPS = ["setup", "gpu_tests", "kernels", "distill", "profile", "selftest"]


def run_check(out: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("OUT", None)
    return subprocess.run([str(REPO / "bench" / "gpu" / "check.sh"), "--cpu-dry-run", "--out", str(out), *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def make_wheel(folder: Path) -> Path:
    """A real, minimal pure-Python wheel with a console script (as transformers' wheel has)."""
    import zipfile

    path = folder / "demo_wheel-1.0-py3-none-any.whl"
    files = {"demo_wheel/__init__.py": "def main():\n    print('demo')\n",
             "demo_wheel-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: demo-wheel\nVersion: 1.0\n",
             "demo_wheel-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
             "demo_wheel-1.0.dist-info/entry_points.txt": "[console_scripts]\ndemo-wheel = demo_wheel:main\n"}
    files["demo_wheel-1.0.dist-info/RECORD"] = "".join(f"{name},,\n" for name in [*files, "demo_wheel-1.0.dist-info/RECORD"])
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


@pytest.mark.slow
def test_cpu_dry_run_runs_every_step_and_writes_json_and_a_summary(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels)  # a carried wheel with a bin/ script, installed in the same pip call as kdtool
    out = tmp_path / "out"
    done = run_check(out, "--wheels", str(wheels))
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == ["check.log", "step0_setup.json", "step1_gpu_tests.json", "step2_kernels.json", "step3_distill.json",
                     "step4_profile.json", "step5_selftest.json", "summary.json"]  # the device tool returns at most 8 files
    records = {name: json.loads((out / f"step{i}_{name}.json").read_text()) for i, name in enumerate(STEPS)}
    assert all(r["status"] == "ok" for r in records.values()), {k: r["error"] for k, r in records.items()}

    setup = records["setup"]["result"]  # ok only if bin/kdtool landed in the target beside the wheel's bin/
    assert setup["kdtool"].endswith("/site)")  # kdtool came from the temporary target, not the venv
    assert setup["wheels"] == ["demo_wheel-1.0-py3-none-any.whl"]
    assert setup["cuda_available"] is False
    counts = records["gpu_tests"]["result"]["counts"]
    assert counts.get("skipped", 0) >= 40 and counts.get("deselected", 0) > 0 and "failed" not in counts  # no GPU: skipped
    kernels = records["kernels"]["result"]
    assert set(kernels["attention_prob_loss_fwd_bwd"]) == {"mse", "kl"} and kernels["device"].startswith("cpu")
    assert len(kernels["fused_attention_inference"]) == 4  # 2 shapes x head dims 32, 64
    assert all(row["max_abs_error_vs_sdpa"] < 1e-2 for row in kernels["fused_attention_inference"].values())
    distill = records["distill"]["result"]
    assert distill["shapes"]["tiny"] and distill["seed"]["attention"] == "eager" and distill["kdtool"]["attention"] == "sdpa"
    profile = records["profile"]["result"]
    names = [m["name"] for m in profile["models"]]
    assert names == [f"{model}[{variant.replace(':', ',')}]" for model in ("teacher", "student") for variant in check.VARIANTS]
    assert len(profile["fixed"]) == 4 * 8 and all(row["status"] == "ok" for row in profile["fixed"])
    selftest = records["selftest"]["result"]["bundles"]  # the CPU engine runs each bundle's self-test; no GPU here
    assert all(runs["cpu"]["passed"] for runs in selftest.values())
    assert selftest["fp32"]["cuda"]["passed"] is None and "cuda" in selftest["fp32"]["cuda"]["not_run"].lower()

    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "cpu-dry-run" and [s["name"] for s in summary["steps"]] == STEPS
    table = done.stdout[done.stdout.index("SUMMARY"):]
    for name in STEPS:
        assert name in table
    assert "teacher[fp16,sdpa]" in table and "skipped" in table  # the profile headline, the gpu tests' count


def test_a_failing_setup_is_reported_and_the_later_steps_say_why_they_did_not_run(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "broken-1.0-py3-none-any.whl").write_bytes(b"not a zip")
    done = run_check(tmp_path / "out", "--wheels", str(wheels), timeout=300)
    assert done.returncode == 1
    setup = json.loads((tmp_path / "out" / "step0_setup.json").read_text())
    assert setup["status"] == "failed" and setup["error"].startswith("exit ")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    later = summary["steps"][1:]
    assert [s["status"] for s in later] == ["skipped"] * 5 and all("setup failed" in s["reason"] for s in later)


def test_bad_arguments_exit_2_without_running_anything(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    done = subprocess.run([str(REPO / "bench" / "gpu" / "check.sh"), "--cpu-dry-run"], env={**env, "PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--out DIR or set OUT" in done.stderr
    done = run_check(tmp_path, "--steps", "6", timeout=60)
    assert done.returncode == 2 and "--steps" in done.stderr and not any(tmp_path.iterdir())


# --- the step runner --------------------------------------------------------------------------------

@pytest.fixture
def runner(tmp_path):
    r = check.Runner(tmp_path, dict(os.environ), budget=60, dry=True)
    yield r
    r.log.close()


def test_a_hung_step_is_killed_with_its_children_at_its_limit(runner, tmp_path):
    marker = tmp_path / "child-survived"
    child = tmp_path / "child.py"
    child.write_text(f"import time\ntime.sleep(4)\nopen({str(marker)!r}, 'w').close()\n")
    # a parent that hangs, with a child that would outlive it: the whole process group must go
    hang = [sys.executable, "-c",
            f"import subprocess, sys, time; subprocess.Popen([sys.executable, {str(child)!r}]); time.sleep(60)"]
    t0 = time.monotonic()
    record = runner.step(7, "hang", [hang, [sys.executable, "-c", "print('never')"]], None, limit=1.5)
    assert time.monotonic() - t0 < 15
    assert record["status"] == "timeout" and "timed out after 2 s" in record["error"]
    assert "never" not in record["output_tail"]  # the step stops at the hung command
    time.sleep(5)
    assert not marker.exists()
    assert json.loads((tmp_path / "step7_hang.json").read_text())["status"] == "timeout"


def test_a_failing_command_records_its_last_line_and_the_next_step_still_runs(runner, tmp_path):
    bad = [sys.executable, "-c", "import sys; print('working'); sys.exit('ValueError: no such shape 9x9')"]
    first = runner.step(1, "bad", [bad], None, limit=30)
    assert first["status"] == "failed" and first["error"] == "exit 1: ValueError: no such shape 9x9"
    result = tmp_path / "r.json"
    good = [sys.executable, "-c", f"import json; json.dump({{'summary': '3 passed'}}, open({str(result)!r}, 'w'))"]
    second = runner.step(2, "gpu_tests", [good], result, limit=30)
    assert second["status"] == "ok" and second["result"] == {"summary": "3 passed"} and second["headline"] == "3 passed"
    missing = runner.step(3, "kernels", [[sys.executable, "-c", "pass"]], tmp_path / "absent.json", limit=30)
    assert missing["status"] == "failed" and "no JSON result" in missing["error"]
    assert "working" in (tmp_path / "check.log").read_text()


def test_on_a_gpu_a_test_run_where_everything_skipped_is_a_failure():
    record = {"status": "ok"}
    check.check_tests(record, "52 skipped, 355 deselected in 3.1s", dry=False)
    assert record["status"] == "failed" and "no gpu test ran" in record["error"]
    record = {"status": "ok"}
    check.check_tests(record, "40 passed, 12 skipped, 355 deselected in 93.0s", dry=False)
    assert record["status"] == "ok" and record["result"]["counts"] == {"passed": 40, "skipped": 12, "deselected": 355}


def test_summary_table_keeps_going_over_partial_results():
    record = {"name": "distill", "status": "ok", "result": {"seed": {}}}
    assert headline(record).startswith("(no headline: KeyError")
    text = format_summary({"mode": "gpu", "seconds": 300.0, "budget_seconds": 480.0, "steps": [
        {"step": 2, "name": "kernels", "status": "timeout", "seconds": 100.0, "error": "timed out after 100 s", "headline": ""}]})
    assert "of a 480 s budget" in text and "timed out after 100 s" in text
