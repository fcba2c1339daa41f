"""The trainer end to end on tiny real models: two-stage distillation, cached teacher logits,
exact resume (a stopped run and a killed process), and two gloo processes against one."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tiny
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from kdtool.cli import main
from kdtool.distill import DistillConfig, distill

COMMON = ["--max-length", "64", "--doc-stride", "16", "--max-query-length", "16", "--batch-size", "8",
          "--max-train-examples", "24", "--lr", "1e-3", "--no-progress"]


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory, bpe_tokenizer) -> Path:
    """A tiny random RoBERTa QA teacher with 4 layers (hidden 64, 4 heads)."""
    return tiny.tiny_qa_model(tmp_path_factory.mktemp("kd") / "teacher", bpe_tokenizer, "roberta", layers=4, seed=3)


@pytest.fixture(scope="module")
def student_json(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("kd") / "student.json"
    path.write_text(json.dumps({"layers": 2, "hidden": 32, "heads": 2, "intermediate": 64}))
    return path


def run_cli(args):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def log_records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]


def count_teacher_forwards(layers: int = 4):
    calls = []
    def hook(module, args, output):
        if type(module).__name__.endswith("ForQuestionAnswering") and module.config.num_hidden_layers == layers:
            calls.append(1)
    return calls, torch.nn.modules.module.register_module_forward_hook(hook)


def test_two_stage_distillation_end_to_end(tmp_path, teacher_dir, student_json, squad_file):
    out = tmp_path / "student"
    calls, handle = count_teacher_forwards()
    try:
        result = run_cli(["distill", str(teacher_dir), "--student", str(student_json), "--train", str(squad_file),
                          "--dev", str(squad_file), "--max-dev-examples", "12", "-o", str(out), "--epochs", "3",
                          "--intermediate-epochs", "1", "--eval-batch-size", "16"] + COMMON)
    finally:
        handle.remove()
    assert f"wrote {out}" in result.output
    report = json.loads((out / "distill_report.json").read_text())
    records = log_records(out)
    steps = report["data"]["steps_per_epoch"]
    assert report["stages"] == ["intermediate", "prediction", "prediction"] and len(records) == 3 * steps
    assert {"attention", "hidden", "embedding", "loss"} <= set(records[0]) and "prediction" not in records[0]
    assert "prediction" in records[-1] and "attention" not in records[-1]
    assert records[0]["hidden"] > records[steps - 1]["hidden"]  # the intermediate losses are learnt
    assert report["layer_map"] == {"0": 0, "1": 2, "2": 4} and report["head_groups"] == 2
    assert len(report["evals"]) == 3 and report["best"]["f1"] == max(e["f1"] for e in report["evals"])
    # the teacher runs for the intermediate epoch and once over the data for the cache; never again
    windows = report["data"]["train_windows"]
    assert len(calls) == steps + -(-windows // 16)
    assert not Path(f"{out}.work").exists()
    from kdtool.data import load_squad
    from kdtool.engines import load_engine
    from kdtool.predict import predict

    engine = load_engine(out)
    assert engine.model.config.num_hidden_layers == 2
    assert len(predict(engine, load_squad(squad_file).examples[:3])) == 3


def test_logits_cache_holds_the_teachers_logits(tmp_path, teacher_dir, squad_file):
    from kdtool.data import FeatureConfig, load_squad, tokenize_examples
    from kdtool.distill.logits_cache import build_logits_cache
    from kdtool.engines import load_engine

    engine = load_engine(teacher_dir)
    feats = tokenize_examples(load_squad(squad_file).examples[:10], engine.tokenizer, FeatureConfig(64, 16, 16))
    cache = build_logits_cache(tmp_path / "c", engine.run, feats, batch_size=4, key="k")
    idx = [3, 0, 7]
    s, e = cache.batch(idx, 64, "cpu")
    ref_s, ref_e = engine.run(feats.batch(idx, length=64))
    for row, i in enumerate(idx):
        n = len(feats.input_ids[i])
        torch.testing.assert_close(s[row, :n], torch.from_numpy(ref_s[row, :n]), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(e[row, :n], torch.from_numpy(ref_e[row, :n]), rtol=1e-4, atol=1e-5)


def _config(teacher_dir, student_json, squad_file, out, **kw):
    return DistillConfig(model=str(teacher_dir), student=str(student_json), train_file=str(squad_file), output=str(out),
                         max_length=64, doc_stride=16, max_query_length=16, batch_size=8, max_train_examples=24,
                         lr=1e-3, epochs=3, intermediate_epochs=1, save_every=2, **kw)


def _weights(out: Path) -> dict:
    return load_file(out / "model.safetensors")


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, teacher_dir, student_json, squad_file):
    out = tmp_path_factory.mktemp("full") / "full"
    return out, distill(_config(teacher_dir, student_json, squad_file, out))


def test_stopped_run_resumes_to_identical_weights(tmp_path, teacher_dir, student_json, squad_file, uninterrupted):
    full_dir, full = uninterrupted
    total = full["data"]["steps_per_epoch"] * 3
    steps = full["data"]["steps_per_epoch"]
    stop = steps + 2  # inside the first prediction epoch, one step after a periodic checkpoint
    assert distill(_config(teacher_dir, student_json, squad_file, tmp_path / "part", stop_after=stop))["stopped"]
    latest = json.loads((tmp_path / "part.work" / "latest.json").read_text())["step"]
    assert latest < stop and latest % steps  # resumes mid-epoch and redoes the unsaved step
    distill(_config(teacher_dir, student_json, squad_file, tmp_path / "part", resume=True))
    _assert_same_weights(full_dir, tmp_path / "part")
    assert log_records(full_dir) == log_records(tmp_path / "part")
    assert total == len(log_records(full_dir))


def test_killed_process_resumes_to_identical_weights(tmp_path, teacher_dir, student_json, squad_file, uninterrupted):
    args = ["distill", str(teacher_dir), "--student", str(student_json), "--train", str(squad_file), "--epochs", "3",
            "--intermediate-epochs", "1", "--save-every", "1"] + COMMON
    out = tmp_path / "killed"
    cmd = [sys.executable, "-c", "import sys; from kdtool.cli import main; sys.exit(main())"] + args + ["-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = Path(f"{out}.work") / "latest.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if latest.exists() and json.loads(latest.read_text())["step"] >= 4:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    run_cli(args + ["-o", str(out), "--resume"])
    _assert_same_weights(uninterrupted[0], out)


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_two_gloo_processes_follow_the_single_process_trajectory(tmp_path, teacher_dir, student_json, squad_file):
    args = ["distill", str(teacher_dir), "--student", str(student_json), "--train", str(squad_file), "--schedule", "joint",
            "--epochs", "2", "--dropout", "0", "--hard-weight", "1"] + COMMON
    run_cli(args + ["-o", str(tmp_path / "one")])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    script = tmp_path / "kdtool_main.py"
    script.write_text("import sys\nfrom kdtool.cli import main\nsys.exit(main())\n")
    done = subprocess.run(launcher + [str(script)] + args + ["-o", str(tmp_path / "two")], env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    one, two = log_records(tmp_path / "one"), log_records(tmp_path / "two")
    assert len(one) == len(two) > 4
    assert json.loads((tmp_path / "two" / "distill_report.json").read_text())["data"]["processes"] == 2
    for a, b in zip(one, two, strict=True):
        for key in ("loss", "attention", "hidden", "embedding", "prediction", "hard", "grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)


@pytest.mark.parametrize("projection", ["shared", "per-layer"])
def test_probs_objective_is_the_seed_loss_on_hf_attention_maps(tmp_path, teacher_dir, squad_file, projection):
    """--attention-loss probs on recomputed Q/K equals MSE over the maps HF returns with output_attentions."""
    from kdtool.data import FeatureConfig, load_squad, tokenize_examples
    from kdtool.distill import build_student
    from kdtool.distill.mapping import default_layer_map
    from kdtool.distill.objective import Objective, teacher_targets
    from kdtool.models import load_qa_model, load_tokenizer

    cfg = tmp_path / "s.json"
    cfg.write_text(json.dumps({"layers": 2, "hidden": 32, "heads": 4, "intermediate": 64, "hidden_dropout_prob": 0,
                               "attention_probs_dropout_prob": 0}))
    teacher = load_qa_model(teacher_dir, attn_implementation="eager").eval()
    student, _ = build_student(str(cfg), str(teacher_dir))
    config = DistillConfig(model=str(teacher_dir), student=str(cfg), train_file="-", output="-", schedule="joint",
                           attention_loss="probs", projection=projection, hidden_weight=0, embedding_weight=0)
    lmap = default_layer_map(2, 4)
    objective = Objective(student, config=config, layer_map=lmap, teacher_hidden=64)
    assert len(objective.projection) == (1 if projection == "shared" else 3)
    feats = tokenize_examples(load_squad(squad_file).examples[:6], load_tokenizer(teacher_dir), FeatureConfig(64, 16, 16),
                              with_labels=True)
    batch = {k: torch.from_numpy(v) for k, v in feats.batch(range(6), labels=True).items()}
    assert (batch["attention_mask"] == 0).any()
    losses = objective(batch, "joint", teacher_targets(teacher, batch, "joint", lmap, attention=True))
    student.set_attn_implementation("eager")
    with torch.no_grad():
        s_att = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_attentions=True).attentions
        t_att = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_attentions=True).attentions
    rows = batch["attention_mask"].bool()
    expected = sum(((s_att[k - 1] - t_att[t - 1]) ** 2).permute(0, 2, 1, 3)[rows].mean() for k, t in lmap.items() if k)
    torch.testing.assert_close(losses["attention"], expected, rtol=1e-4, atol=1e-7)
    assert set(losses) == {"attention", "prediction", "loss"}  # zero-weight components are not computed
