"""Crashes and Ctrl-C with real processes and real signals: validate and profile print what they
measured and exit 130, answer keeps every line it finished, a killed export leaves the previous
bundle untouched, and nothing half written is left behind.

A Ctrl-C test holds the command at a real mid-work point (tests/pause_hook: the first progress count of a
task with work left) and signals it there, so the signal never arrives after the command finished, however
busy the cores are."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from badinput_fixtures import CONTEXT, PARTIAL_WRITER, Proc, killed_writer, pause_at, write_jsonl

from kdtool.atomic import atomic_directory, remove_stale_partials
from kdtool.bundle.manifest import verify_bundle
from kdtool.export.config import ExportConfig
from kdtool.export.pipeline import export_model


def _no_partials(*dirs):
    left = [p for d in dirs for p in d.iterdir() if p.name.endswith(".partial")]
    assert not left, left


def test_ctrl_c_during_validate_prints_the_models_scored_and_exits_130(tmp_path, roberta_dir, bert_dir, squad_es_v11):
    js, preds, paused = tmp_path / "v.json", tmp_path / "preds", tmp_path / "paused"
    proc = Proc(["validate", roberta_dir, bert_dir, "--data", squad_es_v11, "--limit", 20, "--device", "cpu",
                 "--threads", 1, "--batch-size", 2, "--json", js, "--predictions-dir", preds], cwd=tmp_path,
                env=pause_at("score bert", paused))
    try:  # held while the candidate's windows are being counted ("score bert: k/N", k < N)
        proc.wait_for(paused.exists, timeout=240)
        assert re.search(r"(^|[\r\n])score bert: \d+/\d+", proc.stderr), proc.stderr[-1000:]
        proc.p.send_signal(signal.SIGINT)
        rc = proc.finish(timeout=120)
    finally:
        proc.kill()
    assert rc == 130, proc.stderr[-2000:]
    assert "Interrupted" in proc.stderr and "Traceback" not in proc.stderr
    assert "roberta" in proc.stdout and "(reference)" in proc.stdout  # the table holds the scored model
    result = json.loads(js.read_text())
    assert result["interrupted"] is True and [m["name"] for m in result["models"]] == ["roberta"]
    assert sorted(p.name for p in preds.iterdir()) == [".kdtool", "roberta.json"]
    _no_partials(tmp_path)


def test_ctrl_c_during_profile_prints_partial_tables_and_exits_130(tmp_path, roberta_dir, bert_dir):
    js, md, paused = tmp_path / "p.json", tmp_path / "p.md", tmp_path / "paused"
    proc = Proc(["profile", roberta_dir, bert_dir, "--seq-len", "16,32", "--batch-size", 1, "--runs", 20,
                 "--warmup", 1, "--threads", 1, "--json", js, "--markdown", md], cwd=tmp_path,
                env=pause_at("profile", paused))
    try:
        proc.wait_for(paused.exists, timeout=120)  # held after a counted run, with runs left
        proc.p.send_signal(signal.SIGINT)
        rc = proc.finish(timeout=120)
    finally:
        proc.kill()
    assert rc == 130, proc.stderr[-2000:]
    assert "Interrupted" in proc.stderr and "Traceback" not in proc.stderr
    assert "Latency at fixed shapes" in proc.stdout
    report = json.loads(js.read_text())
    assert report["interrupted"] is True and [m["name"] for m in report["models"]] == ["roberta", "bert"]
    assert any(row["status"] == "interrupted" for row in report["fixed"])
    assert md.read_text().startswith("# Latency profile")
    _no_partials(tmp_path)


def _complete_rows(path, n_expected_max):
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), "a half-written line"
    rows = [json.loads(line) for line in text.splitlines()]
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(len(rows))] and len(rows) <= n_expected_max
    return rows


def test_answer_streams_lines_and_a_killed_run_keeps_complete_ones(tmp_path, roberta_dir):
    src, out, paused = write_jsonl(tmp_path / "q.jsonl", 3000), tmp_path / "a.jsonl", tmp_path / "paused"
    proc = Proc(["answer", roberta_dir, "--input", src, "--output", out, "--device", "cpu", "--threads", 1],
                env=pause_at("answer", paused))
    try:  # lines are on disk while the process is still answering: written as produced, not at the end
        proc.wait_for(paused.exists, timeout=120)
        assert proc.p.poll() is None and out.read_text().count("\n") >= 64
        proc.p.send_signal(signal.SIGKILL)
        proc.finish()
    finally:
        proc.kill()
    rows = _complete_rows(out, 2999)
    assert len(rows) >= 64 and all(CONTEXT[r["start"]:r["end"]] == r["answer"] for r in rows)


def test_ctrl_c_during_answer_says_how_many_were_written_and_exits_130(tmp_path, roberta_dir):
    src, out, paused = write_jsonl(tmp_path / "q.jsonl", 3000), tmp_path / "a.jsonl", tmp_path / "paused"
    proc = Proc(["answer", roberta_dir, "--input", src, "--output", out, "--device", "cpu", "--threads", 1],
                env=pause_at("answer", paused))
    try:  # held after its first chunk of answers was written, with questions left
        proc.wait_for(paused.exists, timeout=120)
        assert out.read_text().count("\n") >= 1
        proc.p.send_signal(signal.SIGINT)
        rc = proc.finish()
    finally:
        proc.kill()
    assert rc == 130
    rows = _complete_rows(out, 2999)
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("Interrupted")]
    assert line == [f"Interrupted: {len(rows)} of 3000 answers written to {out}."], proc.stderr[-1000:]


def test_killed_export_over_a_previous_bundle_leaves_it_untouched(tmp_path, roberta_dir):
    target = tmp_path / "bundle"
    export_model(ExportConfig(roberta_dir, target, fuse=False))
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    proc = Proc(["export", roberta_dir, "-o", target, "--precision", "fp16", "--overwrite"])
    try:
        proc.wait_for(lambda: "[4/6]" in proc.stderr, timeout=180)  # writing into its temporary directory
        assert any(p.name.endswith(".partial") for p in tmp_path.iterdir())
        proc.p.send_signal(signal.SIGKILL)
        proc.finish()
    finally:
        proc.kill()
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert verify_bundle(target)["precision"] == "fp32"
    # the next write to the same target removes the dead writer's leftovers
    res = subprocess.run([sys.executable, "-c", "from kdtool.cli import main; main()", "export", str(roberta_dir), "-o",
                          str(target), "--no-fuse", "--precision", "int8", "--overwrite"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert verify_bundle(target)["precision"] == "int8"
    _no_partials(tmp_path)


def test_replacing_a_directory_never_leaves_the_target_missing(tmp_path):
    target = tmp_path / "out"
    with atomic_directory(target) as tmp:
        (tmp / "v").write_text("1")
    with atomic_directory(target, overwrite=True) as tmp:
        (tmp / "v").write_text("2")
        assert (target / "v").read_text() == "1"  # the old one stays complete while the new one is written
    assert (target / "v").read_text() == "2"
    with pytest.raises(RuntimeError), atomic_directory(target, overwrite=True) as tmp:
        (tmp / "v").write_text("3")
        raise RuntimeError("crash in the middle")
    assert (target / "v").read_text() == "2"
    _no_partials(tmp_path)


def test_stale_partials_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    """Real writers: one SIGKILLed half-way (removed), one still running (kept), one of another target (kept),
    and a directory merely named like a dead writer's partial, with no marker of kdtool's (kept)."""
    stale = Path(killed_writer(PARTIAL_WRITER.format(tmp_path / "out")))
    other = Path(killed_writer(PARTIAL_WRITER.format(tmp_path / "other")))
    live_proc = subprocess.Popen([sys.executable, "-c", PARTIAL_WRITER.format(tmp_path / "out2")],
                                 stdout=subprocess.PIPE, text=True)
    try:
        live = Path(live_proc.stdout.readline().strip())
        alike = tmp_path / ".out.999999.abc.partial"
        alike.mkdir()
        remove_stale_partials(tmp_path / "out")
        remove_stale_partials(tmp_path / "out2")
        assert not stale.exists() and live.exists() and other.exists() and alike.exists()
    finally:
        live_proc.kill()
        live_proc.wait()
        live_proc.stdout.close()


def test_outputs_get_normal_permissions_not_the_temporary_ones(tmp_path):
    import stat

    from kdtool.atomic import atomic_write_text

    mask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "report.json", "{}")
        with atomic_directory(tmp_path / "bundle") as tmp:
            (tmp / "model.onnx").write_bytes(b"x")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "report.json").stat().st_mode) == 0o644  # not mkstemp's 0600
    assert stat.S_IMODE((tmp_path / "bundle").stat().st_mode) == 0o755  # not mkdtemp's 0700
