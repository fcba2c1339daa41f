"""Round three, class 1: no output is ever written through a name that already exists.

Each test plants what a careless user or a hostile neighbour would (a hard link, a symlink at the
output or at its lock file, a directory named like a dead writer's partial, a forged or copied
stamp, a FIFO stamp, a recipe whose data lies in the run directory, a second mount of an input,
a file-size limit) and runs the real ``kdtool`` command on real files: the inputs are unchanged and
the output is whole. Models are copied first, so a regression can never damage the session's fixtures.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from badinput_fixtures import (
    CONTEXT,
    KDTOOL,
    PARTIAL_WRITER,
    assert_one_line_error,
    copy_model,
    killed_writer,
    run,
    write_jsonl,
)

from kdtool.errors import InputError
from kdtool.paths import check_outputs_apart

ANSWER = ("-q", "¿Quién construyó un puente?", "-c", CONTEXT, "--threads", 1)


def _bytes(*paths: Path) -> dict:
    return {p: p.read_bytes() for p in paths}


@pytest.fixture
def model(tmp_path, roberta_dir) -> Path:
    return copy_model(roberta_dir, tmp_path / "model")


def test_an_output_that_is_a_link_is_replaced_never_written_through(tmp_path, model):
    """A hard link into the model, a symlink to a file the user keeps, and two runs into two hard-linked
    names of one file: each run writes a new file of its own; the linked files keep every byte."""
    before = _bytes(*model.iterdir())
    os.link(model / "config.json", tmp_path / "hard.jsonl")
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    os.symlink(notes, tmp_path / "soft.jsonl")
    (tmp_path / "one.jsonl").write_text("old\n")
    os.link(tmp_path / "one.jsonl", tmp_path / "two.jsonl")
    questions = write_jsonl(tmp_path / "q.jsonl", 3)
    for out in ("hard.jsonl", "soft.jsonl", "one.jsonl"):
        res = run("answer", model, *ANSWER, "-o", tmp_path / out)
        assert res.exit_code == 0, res.output
    assert run("answer", model, "--input", questions, "-o", tmp_path / "two.jsonl", "--threads", 1).exit_code == 0
    assert _bytes(*model.iterdir()) == before and notes.read_text() == "my notes\n"
    assert not (tmp_path / "soft.jsonl").is_symlink()
    assert [json.loads(x)["id"] for x in (tmp_path / "one.jsonl").read_text().splitlines()] == ["0"]
    assert [json.loads(x)["id"] for x in (tmp_path / "two.jsonl").read_text().splitlines()] == ["q0", "q1", "q2"]
    # the -o symlink pointed elsewhere when the guard looked, and at --input by the time the output is opened
    from kdtool.answer import AnswerConfig, answer_file

    race, before_q = tmp_path / "race.jsonl", questions.read_bytes()
    os.symlink(notes, race)
    check_outputs_apart({"--input": questions}, {"--output": race})
    race.unlink()
    os.symlink(questions, race)
    assert answer_file(AnswerConfig(model=model, input=questions, output=race, threads=1)).written == 3
    assert questions.read_bytes() == before_q and len(race.read_text().splitlines()) == 3


def test_links_planted_at_lock_files_are_refused_and_never_written(tmp_path, model):
    """A symlink (or a hard link) at an output's lock-file name, pointing at the input or at the model's
    weights: the command refuses in one line naming the lock file, and nothing it points at changes.
    A lock file a killed writer left is taken over."""
    questions = write_jsonl(tmp_path / "q.jsonl", 3)
    before = _bytes(questions, *model.iterdir())
    os.symlink(questions, tmp_path / ".out.jsonl.kdtool-lock")
    os.link(questions, tmp_path / ".hard.jsonl.kdtool-lock")
    os.symlink(model / "model.safetensors", tmp_path / ".bundle.kdtool-lock")
    assert_one_line_error(run("answer", model, "--input", questions, "-o", tmp_path / "out.jsonl"), 2, "lock file")
    assert_one_line_error(run("answer", model, "--input", questions, "-o", tmp_path / "hard.jsonl"), 2,
                          "not a kdtool lock")
    assert_one_line_error(run("export", model, "-o", tmp_path / "bundle", "--no-fuse"), 2, "lock file")
    assert _bytes(questions, *model.iterdir()) == before
    # a run SIGKILLed while it held an output's lock leaves a real lock file: the next run takes over
    out = tmp_path / "a.jsonl"
    held = killed_writer("import sys, time; from kdtool.paths import acquire_output_lock\n"
                         f"acquire_output_lock({str(out)!r}); print('held', flush=True); time.sleep(600)")
    assert held == "held" and (tmp_path / ".a.jsonl.kdtool-lock").is_file()
    assert run("answer", model, *ANSWER, "-o", out).exit_code == 0
    assert json.loads(out.read_text())["id"] == "0" and not (tmp_path / ".a.jsonl.kdtool-lock").exists()


def test_cleanup_removes_only_what_kdtool_marked_never_an_input(tmp_path, model, squad_file):
    """A model directory named like a dead writer's partial of the output, and a user's directory named
    alike: both survive; a real partial of a SIGKILLed writer of the same output is removed."""
    named = tmp_path / ".preds.999999.keep.partial"
    shutil.copytree(model, named)
    mine = tmp_path / ".preds.4242.x.partial"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    dead = Path(killed_writer(PARTIAL_WRITER.format(tmp_path / "preds")))
    before = _bytes(*named.iterdir())
    res = run("validate", named, "--data", squad_file, "--limit", 2, "--predictions-dir", tmp_path / "preds",
              "--threads", 1)
    assert res.exit_code == 0, res.output
    assert _bytes(*named.iterdir()) == before and (mine / "thesis.tex").read_text() == "years of work"
    assert not dead.exists()


def _predictions(tmp_path, model, squad_file, name="preds") -> Path:
    out = tmp_path / name
    res = run("validate", model, "--data", squad_file, "--limit", 2, "--predictions-dir", out, "--threads", 1)
    assert res.exit_code == 0, res.output
    return out


def test_overwrite_replaces_only_an_unchanged_kdtool_output(tmp_path, model, squad_file):
    """--overwrite refuses a forged stamp, a real stamp copied beside other files, and a kdtool output
    with a file added or edited since; it replaces a kdtool output (or a complete copy of one) as written."""
    overwrite = ("validate", model, "--data", squad_file, "--limit", 2, "--threads", 1, "--overwrite",
                 "--predictions-dir")
    forged = tmp_path / "forged"
    forged.mkdir()
    (forged / ".kdtool").write_text(json.dumps({"kind": "predictions"}))
    (forged / "thesis.tex").write_text("years of work")
    copied = tmp_path / "copied"
    copied.mkdir()
    real = _predictions(tmp_path, model, squad_file)
    shutil.copy2(real / ".kdtool", copied / ".kdtool")
    shutil.copy2(real / "model.json", copied / "model.json")
    (copied / "thesis.tex").write_text("years of work")
    edited = _predictions(tmp_path, model, squad_file, "edited")
    text = (edited / "model.json").read_text()
    (edited / "model.json").write_text(text.replace('"', "'"))  # hand-corrected, same size
    added = _predictions(tmp_path, model, squad_file, "added")
    (added / "notes.md").write_text("mine")
    for victim in (forged, copied, edited, added):
        before = _bytes(*(p for p in victim.iterdir() if p.name != ".kdtool"))
        assert_one_line_error(run(*overwrite, victim), 2, str(victim))
        assert _bytes(*(p for p in victim.iterdir() if p.name != ".kdtool")) == before
    clone, shipped = tmp_path / "clone", tmp_path / "shipped"
    shutil.copytree(real, clone)  # a complete copy (cp -a) is still exactly a kdtool output,
    shutil.copytree(real, shipped, copy_function=shutil.copy)  # and so is one with new times (cp -r, scp)
    for target in (real, clone, shipped):
        res = run(*overwrite, target)
        assert res.exit_code == 0, res.output
    # a run directory is kdtool's only if kdtool made it (a run.json alone proves nothing): --overwrite keeps it
    work = tmp_path / "mine"
    work.mkdir()
    (work / "run.json").write_text('{"fingerprint": "x"}')
    (work / "thesis.tex").write_text("years of work")
    assert_one_line_error(run("finetune", model, "--train", squad_file, "-o", tmp_path / "ft", "--work-dir", work,
                              "--overwrite", "--max-train-examples", 8, "--max-length", 64, "--doc-stride", 16,
                              "--batch-size", 8, "--epochs", 1), 2, "not a kdtool run directory")
    assert (work / "thesis.tex").read_text() == "years of work"


def test_a_fifo_stamp_or_record_is_not_waited_for(tmp_path, model, squad_file):
    """A FIFO as an output's .kdtool stamp, or as a run's stage record: read only if a small regular file."""
    out = tmp_path / "preds"
    out.mkdir()
    os.mkfifo(out / ".kdtool")
    res = subprocess.run([*KDTOOL, "validate", str(model), "--data", str(squad_file), "--limit", "2",
                          "--predictions-dir", str(out), "--overwrite"], capture_output=True, text=True, timeout=180)
    assert res.returncode == 2 and "not written by kdtool" in res.stderr and "Traceback" not in res.stderr, res.stderr
    (tmp_path / "run" / "stages").mkdir(parents=True)
    os.mkfifo(tmp_path / "run" / "stages" / "data.json")
    res = subprocess.run([*KDTOOL, "run", "minilm-squad-es-cpu", "-o", str(tmp_path / "run"), "--dry-run", "--override",
                          f"data.train={squad_file}"], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0 and "data      would run" in res.stdout, res.stdout + res.stderr


def test_a_recipe_stage_never_writes_another_stages_input(tmp_path, model, squad_file):
    """kdtool run -o RUN with data.train at RUN/data/train.json (the split would replace the pool), or the
    teacher inside the run's student directory: refused before any stage runs, both inputs unchanged."""
    run_dir = tmp_path / "run"
    (run_dir / "data").mkdir(parents=True)
    pool = run_dir / "data" / "train.json"
    shutil.copy(squad_file, pool)
    teacher = copy_model(model, run_dir / "student")
    before = _bytes(pool, *teacher.iterdir())
    assert_one_line_error(run("run", "minilm-squad-es-cpu", "-o", run_dir, "--override", f"data.train={pool}"), 2,
                          "data.train", "destroy the input")
    outside = tmp_path / "pool.json"
    shutil.copy(squad_file, outside)
    assert_one_line_error(run("run", "minilm-squad-es-cpu", "-o", run_dir, "--override", f"data.train={outside}",
                              "--override", f"distill.teacher={teacher}"), 2, "distill.teacher", "destroy the input")
    assert _bytes(pool, *teacher.iterdir()) == before
    assert sorted(p.name for p in run_dir.iterdir()) == ["data", "student"]


@contextlib.contextmanager
def _bind_mount(source: Path, target: Path):
    target.mkdir()
    res = subprocess.run(["mount", "--bind", str(source), str(target)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"mount --bind is not permitted here ({res.stderr.strip()[:80]})")
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=False)


def test_a_second_mount_of_an_input_directory_is_the_same_directory(tmp_path, model, squad_file):
    """The guard compares (st_dev, st_ino): a bind mount of the directory that holds --data is that directory."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    data = data_dir / "dev.json"
    shutil.copy(squad_file, data)
    with _bind_mount(data_dir, tmp_path / "mnt") as mnt:
        with pytest.raises(InputError, match="contains"):
            check_outputs_apart({"--data": data}, {"--predictions-dir": mnt})
        with pytest.raises(InputError, match="is the same file"):
            check_outputs_apart({"--data": data}, {"--json": mnt / "dev.json"})
        assert_one_line_error(run("validate", model, "--data", data, "--predictions-dir", mnt, "--overwrite"), 2,
                              "contains --data")
    assert data.read_bytes() == squad_file.read_bytes()


def test_a_file_size_limit_leaves_whole_lines_only(tmp_path, model):
    """prlimit --fsize: answer stops with one line, exit 1, and the answers file ends at a line's end."""
    if shutil.which("prlimit") is None:
        pytest.skip("prlimit is not installed")
    questions, out = write_jsonl(tmp_path / "q.jsonl", 200), tmp_path / "a.jsonl"
    res = subprocess.run(["prlimit", "--fsize=12000", *KDTOOL, "answer", str(model), "--input", str(questions),
                          "-o", str(out), "--threads", "1"], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 1 and len(lines) == 1 and "File too large" in lines[0], res.stderr
    kept = out.read_bytes()
    assert kept.endswith(b"\n") and [json.loads(x)["id"] for x in kept.splitlines()] == [f"q{i}" for i in range(64)]


def test_every_file_output_is_created_new_and_renamed(tmp_path):
    """The library writers: a hard link or symlink at the destination is replaced, its old target untouched."""
    from kdtool.atomic import LineFile, atomic_write_json

    keep = tmp_path / "keep.txt"
    keep.write_text("keep")
    for name in ("a.json", "b.jsonl"):
        os.link(keep, tmp_path / f"hard-{name}")
        os.symlink(keep, tmp_path / f"soft-{name}")
    for how in ("hard", "soft"):
        atomic_write_json(tmp_path / f"{how}-a.json", {"x": 1})
        lines = LineFile(tmp_path / f"{how}-b.jsonl")
        lines.append(b'{"x": 1}\n')
        lines.close()
        assert json.loads((tmp_path / f"{how}-a.json").read_text()) == {"x": 1}
        assert (tmp_path / f"{how}-b.jsonl").read_text() == '{"x": 1}\n'
    assert keep.read_text() == "keep" and os.stat(keep).st_nlink == 1
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []

