"""Defaults that cannot work adapt, values given that cannot work are refused: one rule per case, everywhere.

- The window: a command whose --max-length (export: --max-seq-length) was not given uses 384, clipped to a model
  that accepts fewer positions, with one ``Warning:`` line saying so; a length given that the model cannot take
  is refused in one line that names the fix (kdtool.data.fit_window). finetune, distill, prune, validate,
  export, answer and serve follow it.
- The schedule: a two-stage schedule that nobody gave (a strategy's, prune's recovery default) on one epoch runs
  joint, with one line saying so; ``--schedule two-stage --epochs 1`` is refused naming the fix
  (kdtool.distill.config.schedule_for), in distill and prune alike.
"""

from __future__ import annotations

import json
import logging

import pytest
import tiny
from badinput_fixtures import CONTEXT, assert_one_line_error, run

from kdtool.data import fit_window
from kdtool.errors import InputError

SMALL = ["--doc-stride", "16", "--max-query-length", "16", "--batch-size", "8", "--max-train-examples", "16",
         "--stop-after", "1", "--no-progress"]


@pytest.fixture(scope="module")
def short_model(tmp_path_factory, wordpiece_tokenizer):
    """A model that accepts 128 positions, fewer than the default window of 384."""
    return tiny.tiny_qa_model(tmp_path_factory.mktemp("short") / "short", wordpiece_tokenizer, "bert", max_positions=128)


def warnings(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Warning:")]


def test_fit_window_clips_a_default_and_refuses_a_length_given(caplog):
    with caplog.at_level(logging.WARNING, logger="kdtool"):
        assert fit_window(None, 128, model="m") == 128
        assert fit_window(None, 512, model="m") == 384 and fit_window(None, None, model="m") == 384
        assert fit_window(256, 512, model="m") == 256 and fit_window(100, 128, model="m") == 100
    assert [r.getMessage() for r in caplog.records] == [
        "m accepts 128 positions: windows of 128 tokens instead of the default 384 (--max-length sets another "
        "length, up to 128)"]
    with pytest.raises(InputError, match=r"--max-seq-length 384 exceeds the 128 positions m accepts; give "
                                         r"--max-seq-length 128 or less"):
        fit_window(384, 128, model="m", option="--max-seq-length")


def test_finetune_clips_its_default_window_and_refuses_a_window_given(tmp_path, short_model, squad_file):
    res = run("finetune", short_model, "--train", squad_file, "-o", tmp_path / "clipped", *SMALL)
    assert res.exit_code == 0, res.output
    (line,) = warnings(res)
    assert "accepts 128 positions: windows of 128 tokens instead of the default 384" in line
    out = tmp_path / "refused"
    assert_one_line_error(run("finetune", short_model, "--train", squad_file, "-o", out, "--max-length", 384, *SMALL), 2,
                          "--max-length 384 exceeds the 128 positions", "give --max-length 128 or less")
    assert not out.exists() and not (tmp_path / "refused.work").exists()


def test_distill_runs_a_default_two_stage_schedule_joint_on_one_epoch(tmp_path, short_model, squad_file):
    student = tmp_path / "s.json"
    student.write_text(json.dumps({"layers": 1}))
    common = ["--student", student, "--train", squad_file, "--epochs", 1, "--max-length", 64, *SMALL]
    res = run("distill", short_model, "-o", tmp_path / "joint", *common)
    assert res.exit_code == 0, res.output
    (line,) = warnings(res)
    assert "two-stage needs 2 or more epochs" in line and "joint" in line
    run_config = json.loads((tmp_path / "joint.work" / "run.json").read_text())
    assert run_config["config"]["schedule"] == "joint"
    out = tmp_path / "two-stage"
    assert_one_line_error(run("distill", short_model, "-o", out, "--schedule", "two-stage", *common), 2,
                          "two-stage needs 1 <= intermediate-epochs < epochs (1)", "--epochs 2 or more, or --schedule joint")
    assert not out.exists()


def test_prune_recovery_follows_the_same_schedule_rule(caplog):
    from kdtool.prune.pipeline import _recovery_options

    with caplog.at_level(logging.WARNING, logger="kdtool"):
        assert _recovery_options({"epochs": 1, "schedule": None})["schedule"] == "joint"
        assert _recovery_options({"epochs": 2})["schedule"] == "two-stage"
        assert _recovery_options({"epochs": 1, "schedule": "two-stage"})["schedule"] == "two-stage"  # given: kept
    assert len(caplog.records) == 1 and "two-stage needs 2 or more epochs" in caplog.records[0].getMessage()


def test_validate_answer_export_and_serve_follow_the_window_rule(tmp_path, short_model, squad_file):
    res = run("validate", short_model, "--data", squad_file, "--limit", 2)
    assert res.exit_code == 0, res.output
    assert len(warnings(res)) == 1 and "windows of 128 tokens" in warnings(res)[0]
    refused = ("--max-length 384 exceeds the 128 positions", "give --max-length 128 or less")
    assert_one_line_error(run("validate", short_model, "--data", squad_file, "--max-length", 384), 2, *refused)
    assert_one_line_error(run("answer", short_model, "-q", "¿Quién?", "-c", CONTEXT, "--max-length", 384), 2, *refused)
    assert_one_line_error(run("serve", short_model, "--port", 0, "--max-length", 384), 2, *refused)
    assert_one_line_error(run("export", short_model, "-o", tmp_path / "refused", "--max-seq-length", 384), 2,
                          "--max-seq-length 384 exceeds the 128 positions", "give --max-seq-length 128 or less")
    assert not (tmp_path / "refused").exists()
    res = run("export", short_model, "-o", tmp_path / "bundle")
    assert res.exit_code == 0, res.output
    assert len(warnings(res)) == 1 and "windows of 128 tokens" in warnings(res)[0]
    assert json.loads((tmp_path / "bundle" / "manifest.json").read_text())["max_seq_length"] == 128
