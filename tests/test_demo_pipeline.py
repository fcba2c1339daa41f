"""A reduced ``kdtool demo`` end to end: every stage through the real library, artifacts and report
consistent with each other, a rerun that skips what is done, and the thresholds that fail loudly."""

import json
from dataclasses import replace

import pytest
from click.testing import CliRunner

from kdtool.cli import main
from kdtool.demo.pipeline import DemoCheckFailed, DemoConfig, run_demo
from kdtool.errors import InputError
from kdtool.models import dir_size_bytes

pytestmark = pytest.mark.slow


def reduced(output) -> DemoConfig:
    """Tiny sizes and no quality thresholds: this checks the plumbing, not the F1."""
    return DemoConfig(output=str(output), train_paragraphs=16, dev_paragraphs=4, vocab_size=400, max_length=128,
                      doc_stride=32, teacher_layers=2, teacher_hidden=32, teacher_heads=2, teacher_epochs=1,
                      student_layers=1, student_hidden=16, student_heads=1, student_init="random", distill_epochs=2,
                      batch_size=16, profile_runs=2, profile_questions=5, min_teacher_f1=0.0, min_student_f1=0.0,
                      max_bundle_f1_drop=100.0, min_student_speedup=0.0)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    lines = []
    result = run_demo(reduced(out), progress=lambda e: lines.append(e.message) if e.message else None)
    return result, lines


def test_every_stage_ran_and_left_its_artifacts(demo):
    result, lines = demo
    root = result.run_dir
    assert result.ran == ["data", "finetune", "distill", "export", "validate", "profile", "report"]
    for rel in ("inputs/synthetic-train.json", "inputs/synthetic-dev.json", "inputs/base-roberta/config.json",
                "teacher/config.json", "student/config.json", "bundle-int8/manifest.json", "validate.json",
                "profile.json", "profile.md", "latency.png", "report.md", "report.json", "recipe.yaml"):
        assert (root / rel).is_file(), rel
    assert (root / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(line.startswith("[prepare] synthetic Spanish QA") for line in lines)
    assert any("[7/7] report" in line for line in lines)  # progress is shown stage by stage


def test_report_agrees_with_what_the_stages_wrote(demo):
    result, _ = demo
    root, r = result.run_dir, result.report
    assert set(r["models"]) == {"teacher", "student", "bundle-int8"}
    val = {m["path"]: m for m in json.loads((root / "validate.json").read_text())["models"]}
    for name, m in r["models"].items():
        assert m["f1"] == pytest.approx(val[m["path"]]["f1"]) and 0.0 <= m["f1"] <= 100.0
        assert m["exact_match"] == pytest.approx(val[m["path"]]["exact_match"])
        assert m["size_bytes"] == dir_size_bytes(root / name)
    assert r["models"]["student"]["parameters"] < r["models"]["teacher"]["parameters"]
    assert r["models"]["bundle-int8"]["size_bytes"] < r["models"]["student"]["size_bytes"]
    shape = "batch 1, seq 128"
    assert r["models"]["teacher"]["speedup_vs_teacher"][shape] == 1.0
    prof = json.loads((root / "profile.json").read_text())
    assert prof["reference"] == "teacher" and len(prof["models"]) == 3
    drift = r["drift_vs_student"]["bundle-int8"]
    assert drift["f1_drop"] == pytest.approx(r["models"]["student"]["f1"] - r["models"]["bundle-int8"]["f1"], abs=0.01)
    assert {"finetune", "distill", "export", "validate", "profile"} <= set(r["commands"])
    assert r["commands"]["finetune"].startswith("kdtool finetune ") and " --overwrite" in r["commands"]["distill"]
    md = (root / "report.md").read_text()
    for name in r["models"]:
        assert f"| {name} |" in md
    assert f"{r['models']['teacher']['f1']:.2f}" in md and "latency.png" in md
    assert r["demo"]["rerun"].startswith("kdtool run ")
    assert (root / "stages" / "prepare.json").is_file()


def test_rerun_skips_everything_done_and_thresholds_fail_loudly(demo):
    result, _ = demo
    cfg = reduced(result.run_dir)
    again = run_demo(cfg, progress=None)
    assert again.ran == ["report"] and len(again.skipped) == 6
    with pytest.raises(DemoCheckFailed, match="the teacher did not learn: dev F1 .* < 101"):
        run_demo(replace(cfg, min_teacher_f1=101.0), progress=None)
    with pytest.raises(DemoCheckFailed, match="bundle-int8 lost"):
        run_demo(replace(cfg, max_bundle_f1_drop=-101.0), progress=None)


def test_cli_refuses_a_directory_it_did_not_write(tmp_path):
    (tmp_path / "mine.txt").write_text("precious")
    res = CliRunner().invoke(main, ["demo", "-o", str(tmp_path)])
    assert res.exit_code == 2 and res.stderr.startswith("Error: output directory") and "not written by kdtool" in res.stderr
    assert (tmp_path / "mine.txt").read_text() == "precious"


def test_config_checks():
    with pytest.raises(InputError, match="multiple of its"):
        DemoConfig(teacher_hidden=100, teacher_heads=3)
    with pytest.raises(InputError, match="teacher heads"):
        DemoConfig(teacher_heads=4, student_heads=3, student_hidden=48)
