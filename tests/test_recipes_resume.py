"""Stage resumption of ``kdtool run``: real (tiny) stages, records in stages/, reruns after changes."""

import json

import pytest
from click.testing import CliRunner

from kdtool.cli import main
from kdtool.recipes import parse_recipe
from kdtool.recipes.run_dir import RunDir
from kdtool.recipes.runner import plan, run_recipe


@pytest.fixture(scope="module")
def recipe_raw(tmp_path_factory, squad_file, roberta_dir):
    d = tmp_path_factory.mktemp("recipe")
    (d / "student.json").write_text(json.dumps({"layers": 1}))
    return d, {
        "name": "tiny",
        "data": {"train": str(squad_file), "dev_fraction": 0.34, "lang": "es"},
        "features": {"max_length": 64, "doc_stride": 16, "max_query_length": 24},
        "distill": {"teacher": str(roberta_dir), "student": "student.json", "epochs": 2, "batch_size": 8,
                    "lr": 1e-3, "save_every": 1000, "eval_batch_size": 32},
        "validate": {"reference": "teacher"},
    }


def recipe(recipe_raw, *overrides):
    base, raw = recipe_raw
    return parse_recipe(raw, base_dir=base, overrides=overrides)


def run(r, run_dir):
    return run_recipe(r, run_dir, progress=None)


def test_rerun_skips_done_stages_and_changes_rerun_their_stage_and_later(recipe_raw, tmp_path):
    rd = tmp_path / "run"
    first = run(recipe(recipe_raw), rd)
    assert first.ran == ["data", "distill", "validate", "report"] and first.skipped == []
    records = {s: json.loads((rd / "stages" / f"{s}.json").read_text()) for s in first.ran}
    assert records["distill"]["outputs"] == ["student"] and records["distill"]["command"].startswith("kdtool distill")
    weights = rd / "student" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    f1 = json.loads((rd / "validate.json").read_text())["models"][1]["f1"]

    again = run(recipe(recipe_raw), rd)
    assert again.ran == ["report"] and again.skipped == ["data", "distill", "validate"]
    assert weights.stat().st_mtime_ns == stamp
    assert again.summaries["validate"]["models"]["student"]["f1"] == pytest.approx(f1)  # from the record

    # a change in validate reruns validate only (and the report)
    changed = run(recipe(recipe_raw, "validate.limit=5"), rd)
    assert changed.ran == ["validate", "report"] and weights.stat().st_mtime_ns == stamp
    assert json.loads((rd / "validate.json").read_text())["data"]["questions_scored"] == 5

    # a change in distill reruns distill and every later stage, not the data split
    changed = run(recipe(recipe_raw, "validate.limit=5", "distill.lr=0.002"), rd)
    assert changed.ran == ["distill", "validate", "report"] and changed.skipped == ["data"]
    assert weights.stat().st_mtime_ns != stamp

    # a changed split reruns everything
    assert [done for _, done in plan(recipe(recipe_raw, "validate.limit=5", "distill.lr=0.002",
                                            "data.split_seed=1"), rd)] == [False] * 4
    assert [done for _, done in plan(recipe(recipe_raw, "validate.limit=5", "distill.lr=0.002"), rd)] == \
        [True, True, True, False]  # the report always runs


def test_done_needs_the_record_the_hash_and_the_outputs(tmp_path):
    rd = RunDir(tmp_path)
    (tmp_path / "out").mkdir()
    rd.write_record("distill", "abc", ["out"], {"x": 1}, 1.0)
    assert rd.is_done("distill", "abc")
    assert not rd.is_done("distill", "abd")  # another configuration
    (tmp_path / "out").rmdir()
    assert not rd.is_done("distill", "abc")  # its output is gone
    (tmp_path / "out").mkdir()
    rd.record_path("distill").write_text("{not json")
    assert not rd.is_done("distill", "abc")  # a torn record counts as not done
    rd.forget(["distill", "never-ran"])
    assert not rd.record_path("distill").exists()


def test_cli_run_resumes_and_reports(recipe_raw, tmp_path):
    base, raw = recipe_raw
    import yaml

    path = base / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    rd = tmp_path / "clirun"
    runner = CliRunner()
    res = runner.invoke(main, ["run", str(path), "-o", str(rd), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (rd / "report.md").is_file() and "student" in res.output and "F1" in res.output
    report = json.loads((rd / "report.json").read_text())
    val = json.loads((rd / "validate.json").read_text())
    assert report["models"]["student"]["f1"] == pytest.approx(val["models"][1]["f1"])
    res = runner.invoke(main, ["run", str(path), "-o", str(rd), "--dry-run"])
    assert res.output.count("done, would be skipped") == 3
    res = runner.invoke(main, ["run", str(path), "-o", str(rd), "--no-progress", "--force", "validate"])
    assert res.exit_code == 0 and "skipped: data, distill" in res.output
    res = runner.invoke(main, ["run", str(path), "-o", str(rd), "--override", "validate.max_f1_drop=-101"])
    assert res.exit_code == 1 and "FAIL" in res.stderr  # no candidate can gain 101 F1: the gate trips
    assert "\r" not in res.output + res.stderr  # progress on, not a terminal: plain lines, no bar frames
    assert "[1/4] data" in res.output
