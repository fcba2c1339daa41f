"""``kdtool distill`` killed with SIGKILL at random steps, then ``--resume``: the final weights are
bit-identical to an uninterrupted run (CPU). Real processes, real signals, twice in a row."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest
import tiny
import torch
from badinput_fixtures import Proc, run
from safetensors.torch import load_file

STEPS_PER_EPOCH, EPOCHS = 9, 3  # 72 tiny questions -> 72+ windows -> 9 steps of 8; 27 steps in all


@pytest.fixture(scope="module")
def setup(tmp_path_factory, bpe_tokenizer, squad_file):
    root = tmp_path_factory.mktemp("crash")
    teacher = tiny.tiny_qa_model(root / "teacher", bpe_tokenizer, "roberta", layers=4, seed=7)
    student = root / "student.json"
    student.write_text(json.dumps({"layers": 2, "hidden": 32, "heads": 2, "intermediate": 64}))
    args = ["distill", teacher, "--student", student, "--train", squad_file, "--epochs", EPOCHS,
            "--intermediate-epochs", 1, "--save-every", 1, "--max-length", 64, "--doc-stride", 16,
            "--max-query-length", 16, "--batch-size", 8, "--lr", "1e-3", "--seed", 5, "--no-progress"]
    full = root / "full"
    result = run(*args, "-o", full)
    assert result.exit_code == 0, result.output
    return [str(a) for a in args], full


def _log_lines(work: Path) -> int:
    log = work / "train_log.jsonl"
    return log.read_text().count("\n") if log.exists() else 0


def _kill_at(args: list[str], out: Path, k: int, *, resume: bool) -> int:
    """Run distill in a subprocess and SIGKILL it once its log holds >= k steps; the step it reached."""
    work = Path(f"{out}.work")
    env = {"OMP_NUM_THREADS": str(torch.get_num_threads())}  # same kernels as the in-process run
    proc = Proc(args + ["-o", str(out)] + (["--resume"] if resume else []), env=env)
    try:
        deadline = time.time() + 120
        while _log_lines(work) < k:
            assert proc.p.poll() is None, f"distill ended before step {k}: {proc.stderr[-2000:]}"
            assert time.time() < deadline, "timed out"
            time.sleep(0.005)
        proc.p.kill()  # SIGKILL: no handler, no cleanup, no flush
        proc.finish()
    finally:
        proc.kill()
    assert proc.p.returncode == -9
    return _log_lines(work)


def test_sigkill_at_random_steps_then_resume_gives_identical_weights(tmp_path, setup):
    args, full = setup
    total = STEPS_PER_EPOCH * EPOCHS
    assert len((full / "train_log.jsonl").read_text().splitlines()) == total
    rng = random.Random()
    first = rng.randint(2, total // 2)
    second = rng.randint(total // 2 + 2, total - 4)
    print(f"killing at log steps >= {first}, then >= {second}")  # shown on failure, to reproduce
    out = tmp_path / "student"
    reached = _kill_at(args, out, first, resume=False)
    assert not out.exists() and reached < total
    reached = _kill_at(args, out, second, resume=True)
    assert not out.exists() and reached < total
    result = run(*args, "-o", out, "--resume")
    assert result.exit_code == 0, result.output
    a, b = load_file(full / "model.safetensors"), load_file(out / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    # the resumed run's log is the uninterrupted one, step for step
    def strip(p):
        return [json.loads(x) for x in (p / "train_log.jsonl").read_text().splitlines()]

    assert strip(full) == strip(out)
    assert not Path(f"{out}.work").exists()
