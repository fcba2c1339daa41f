"""Hostile and malformed input: one line, exit 2, nothing hangs, nothing quoted at length, no NaN
written. Mechanisms: kdtool.errors.require_file (regular files, size limit), the alias-free recipe
loader, the CLI's one-line cap and RecursionError rule, kdtool.cli.options (FINITE, TEXT), the typed
SQuAD reader and its NFC offset check."""

from __future__ import annotations

import json
import os
import subprocess
import unicodedata
from pathlib import Path

import pytest
from badinput_fixtures import CONTEXT, KDTOOL, assert_one_line_error, run, squad

from kdtool.atomic import atomic_write_json
from kdtool.data import load_squad


def _preds(tmp_path) -> Path:
    p = tmp_path / "p.json"
    p.write_text("{}")
    return p


def test_inputs_that_are_not_regular_files_are_refused_without_hanging(tmp_path, squad_file):
    """A FIFO nobody writes (a real one, under a timeout) and /dev/zero: refused before being opened."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for data in (fifo, Path("/dev/zero")):
        proc = subprocess.run(KDTOOL + ["score", str(data), str(_preds(tmp_path))], capture_output=True, text=True,
                              timeout=60, env={**os.environ, "HOME": str(tmp_path)})
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and ("FIFO" in proc.stderr or "device" in proc.stderr), proc.stderr
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (2 << 20) + squad_file.read_bytes())
    assert_one_line_error(run("--max-input-size", 1, "score", big, _preds(tmp_path)), 2, "over the 1 MiB input limit")
    assert run("--max-input-size", 8, "score", big, _preds(tmp_path)).exit_code == 0


def test_recipe_alias_bomb_is_refused_and_no_error_line_is_long(tmp_path):
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for k in "bcdefghi":
        prev = chr(ord(k) - 1)
        bomb.append(f"{k}: &{k} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]")
    bomb.append("name: *i")
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text("\n".join(bomb) + "\n")
    line = assert_one_line_error(run("run", recipe, "--dry-run"), 2, "aliases")
    assert len(line) < 1000
    # a value quoted back by an error is capped too: a 100 kB section value
    long = tmp_path / "long.yaml"
    long.write_text(f"name: r\ndata: {'k' * 100_000}\n")
    assert len(assert_one_line_error(run("run", long, "--dry-run"), 2, "more characters")) < 1000


@pytest.mark.parametrize("payload", ["[" * 200_000 + "]" * 200_000, '{"a":' * 100_000 + "1" + "}" * 100_000])
def test_deeply_nested_json_is_bad_input(tmp_path, squad_file, payload):
    deep = tmp_path / "deep.json"
    deep.write_text(payload)
    assert_one_line_error(run("score", squad_file, deep), 2, "nested too deeply")
    assert_one_line_error(run("score", deep, _preds(tmp_path)), 2, "nested too deeply")


def test_non_finite_numbers_are_bad_input_and_json_outputs_hold_no_nan(tmp_path, roberta_dir, squad_file):
    for args in (["validate", roberta_dir, "--data", squad_file, "--max-f1-drop", "nan"],
                 ["validate", roberta_dir, "--data", squad_file, "--null-threshold", "-inf"],
                 ["finetune", roberta_dir, "--train", squad_file, "-o", tmp_path / "o", "--lr", "inf"],
                 ["split", squad_file, "--train", tmp_path / "t", "--dev", tmp_path / "d", "--dev-fraction", "NaN"]):
        assert_one_line_error(run(*args), 2, "not a finite number")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\ndata: {train: x.json}\ndistill: {teacher: t, lr: .nan}\n")
    assert_one_line_error(run("run", recipe, "--dry-run"), 2, "distill.lr")
    atomic_write_json(tmp_path / "x.json", {"f1": float("nan"), "rows": [float("inf"), 1.5]})
    assert json.loads((tmp_path / "x.json").read_text()) == {"f1": None, "rows": [None, 1.5]}


def test_undecodable_command_line_text_is_bad_input(roberta_dir, tmp_path):
    """-q with bytes that are not text in the C locale: one line, exit 2, before any model loads."""
    proc = subprocess.run([*[a.encode() for a in KDTOOL], b"answer", str(roberta_dir).encode(), b"-q", b"qui\xe9n",
                           b"-c", CONTEXT.encode()], capture_output=True, timeout=120,
                          env={**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "HOME": str(tmp_path)})
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2 and err.count("\n") == 1 and "not valid text" in err, err


def _qa(qid, **extra):
    return {"id": qid, "question": "¿Quién?", "answers": [{"text": "María López", "answer_start": 9}], **extra}


@pytest.mark.parametrize("qa, needle", [(_qa("q1", is_impossible="false"), "is_impossible"),
                                        (_qa(None), "is NoneType, not a string"),
                                        (_qa([1, 2]), "is list, not a string")])
def test_squad_fields_of_the_wrong_type_are_bad_input(tmp_path, qa, needle):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(squad([(CONTEXT, [qa])])))
    assert_one_line_error(run("score", path, _preds(tmp_path)), 2, needle)


def test_an_nfd_answer_against_an_nfc_context_is_found_at_its_offset(tmp_path):
    context = unicodedata.normalize("NFC", "El café de María está en Sevilla.")
    answer = unicodedata.normalize("NFD", "café de María")
    assert answer != context[3:3 + len(answer)]
    path = tmp_path / "s.json"
    path.write_text(json.dumps(squad([(context, [{"id": "q", "question": "¿Qué?",
                                                  "answers": [{"text": answer, "answer_start": 3}]}])])))
    ds = load_squad(path)
    (gold,) = ds.examples[0].answers
    assert gold.start == 3 and gold.text == context[3:16]  # the context's own characters
    wrong = tmp_path / "w.json"
    wrong.write_text(json.dumps(squad([(context, [{"id": "q", "question": "¿Qué?",
                                                   "answers": [{"text": answer, "answer_start": 20}]}])])))
    assert_one_line_error(run("score", wrong, _preds(tmp_path)), 2, "NFC")


def test_output_into_a_missing_directory_is_found_before_loading_and_home_stays_quiet(tmp_path, roberta_dir):
    assert_one_line_error(run("answer", roberta_dir, "-q", "¿Quién?", "-c", CONTEXT, "-o", tmp_path / "no" / "a.jsonl"),
                          2, "does not exist")
    home = tmp_path / "home"
    home.mkdir(mode=0o500)
    proc = subprocess.run(KDTOOL + ["answer", str(roberta_dir), "-q", "¿Quién?", "-c", CONTEXT], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home)})
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
