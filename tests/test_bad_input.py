"""Bad input, as a careless or hostile user gives it: one line on stderr saying what is wrong and what
to do, a non-zero exit (2 for usage errors and bad input), no traceback, nothing half written.
Each test is a row of the README table "Bad input and failure behaviour"."""

from __future__ import annotations

import json
import shutil

import pytest
import tiny
from badinput_fixtures import CONTEXT, KDTOOL, assert_one_line_error, copy_model, run, squad, write_jsonl

from kdtool.bundle.manifest import MANIFEST, file_table, verify_bundle
from kdtool.engines.trt import check_engine_gpu
from kdtool.errors import IntegrityError
from kdtool.export.config import ExportConfig
from kdtool.export.pipeline import export_model


@pytest.fixture(scope="module")
def clean_bundle(tmp_path_factory, roberta_dir):
    return export_model(ExportConfig(roberta_dir, tmp_path_factory.mktemp("bad-input") / "bundle", fuse=False))


@pytest.fixture
def bundle(clean_bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(clean_bundle, copy)
    return copy


def _reseal(bundle):
    """Rewrite the manifest's file table so that a tampered file checks out (an attacker who edits both)."""
    m = json.loads((bundle / MANIFEST).read_text())
    m["files"] = file_table(bundle)
    (bundle / MANIFEST).write_text(json.dumps(m))


# --- files and paths ------------------------------------------------------------------------------

def test_wrong_kind_of_path_everywhere(tmp_path, roberta_dir, squad_file):
    a_file = tiny.write_json(tmp_path / "x.json", {})
    assert_one_line_error(run("answer", roberta_dir, "--input", tmp_path), 2, "is a directory")
    assert_one_line_error(run("answer", a_file, "-q", "a", "-c", "b"), 2, "is a file")
    assert_one_line_error(run("answer", roberta_dir, "-q", "a", "-c", "b", "--output", tmp_path), 2, "--output",
                          "is a directory")
    assert_one_line_error(run("answer", roberta_dir, "-q", "a", "-c", "b", "--output", a_file / "a.jsonl"), 2,
                          "is a file, not a directory")
    # outputs are checked before any model runs, not after minutes of scoring
    assert_one_line_error(run("validate", roberta_dir, "--data", squad_file, "--json", tmp_path), 2, "--json")
    assert_one_line_error(run("validate", roberta_dir, "--data", squad_file, "--predictions-dir", a_file), 2,
                          "is a file")
    assert_one_line_error(run("score", squad_file, tmp_path), 2, "is a directory")
    assert_one_line_error(run("export", roberta_dir, "-o", a_file), 2, "is a file")
    assert json.loads(a_file.read_text()) == {}


def test_file_that_is_not_utf8(tmp_path, roberta_dir):
    f = tmp_path / "latin1.json"
    f.write_bytes('{"data": "Sevilla año"}'.encode("latin-1"))
    assert_one_line_error(run("score", f, f), 2, "not UTF-8")
    j = tmp_path / "q.jsonl"
    j.write_bytes('{"question": "¿año?", "context": "año"}\n'.encode("latin-1"))
    assert_one_line_error(run("answer", roberta_dir, "--input", j), 2, "not UTF-8")


# --- datasets ---------------------------------------------------------------------------------------

def test_dataset_with_no_usable_question(tmp_path, roberta_dir):
    data = tiny.write_json(tmp_path / "d.json", squad([
        ("Sevilla es bonita.", [{"id": "1", "question": "¿Qué?", "answers": [{"text": "", "answer_start": 0}]}]),
        ("   ", [{"id": "2", "question": "¿Qué?", "answers": [{"text": "x", "answer_start": 0}]}]),
    ]))
    preds = tiny.write_json(tmp_path / "p.json", {"1": "x"})
    for args in (("score", data, preds), ("validate", roberta_dir, "--data", data)):
        line = assert_one_line_error(run(*args), 2, "no usable question", "all 2 were dropped")
        assert "1 empty answers dropped" in line and "1 questions with an empty context" in line


def test_empty_context_and_question_are_dropped_and_counted(tmp_path, roberta_dir):
    data = tiny.write_json(tmp_path / "d.json", squad([
        ("", [{"id": "1", "question": "¿Qué?", "answers": [{"text": "Sevilla", "answer_start": 0}]}]),
        ("Sevilla es bonita.", [{"id": "2", "question": "  ", "answers": [{"text": "Sevilla", "answer_start": 0}]},
                                {"id": "3", "question": "¿Qué?", "answers": [{"text": "Sevilla", "answer_start": 0}]}]),
    ]))
    res = run("validate", roberta_dir, "--data", data, "--json", tmp_path / "v.json")
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "v.json").read_text())["data"]
    assert report["questions_dropped_empty"] == 2 and report["questions_scored"] == 1
    # answer: an empty context or question is refused up front, on the command line or in a JSONL line
    assert_one_line_error(run("answer", roberta_dir, "-q", "¿Quién?", "-c", " \n"), 2, "--context", "empty")
    lines = tmp_path / "q.jsonl"
    lines.write_text(json.dumps({"question": "¿Quién?", "context": CONTEXT}) + "\n"
                     + json.dumps({"question": "¿Quién?", "context": ""}) + "\n")
    out = tmp_path / "a.jsonl"
    assert_one_line_error(run("answer", roberta_dir, "--input", lines, "--output", out), 2, "q.jsonl:2", "empty context")
    assert not out.exists()


def test_jsonl_that_is_not_jsonl(tmp_path, roberta_dir, squad_file):
    assert_one_line_error(run("answer", roberta_dir, "--input", squad_file), 2, ":1 needs string fields")
    broken = tmp_path / "b.jsonl"
    broken.write_text(json.dumps({"question": "a", "context": "b"}) + "\n{oops\n")
    assert_one_line_error(run("answer", roberta_dir, "--input", broken), 2, "b.jsonl:2 is not valid JSON")
    empty = tmp_path / "e.jsonl"
    empty.write_text("\n\n")
    assert_one_line_error(run("answer", roberta_dir, "--input", empty), 2, "holds no questions")


def test_question_longer_than_max_length_is_answered_from_its_first_tokens(roberta_dir):
    question = "¿Quién construyó el puente de la ciudad? " * 400  # thousands of tokens, window of 256
    res = run("answer", roberta_dir, "-q", question, "-c", CONTEXT)
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)
    assert row["answer"] == CONTEXT[row["start"]:row["end"]] != ""


def test_repeated_ids_keep_their_own_answers(tmp_path, roberta_dir):
    src = tmp_path / "q.jsonl"
    other = "Carmen Ruiz fundó una escuela en Bilbao en 1920."
    src.write_text("\n".join(json.dumps({"id": "same", "question": "¿Quién?", "context": c}, ensure_ascii=False)
                             for c in (CONTEXT, other)) + "\n")
    res = run("answer", roberta_dir, "--input", src)
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in res.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["same", "same"]
    assert rows[0]["answer"] == CONTEXT[rows[0]["start"]:rows[0]["end"]]
    assert rows[1]["answer"] == other[rows[1]["start"]:rows[1]["end"]]


# --- models -----------------------------------------------------------------------------------------

def test_model_without_weights(tmp_path, roberta_dir, squad_file):
    src = copy_model(roberta_dir, tmp_path / "noweights", without={"model.safetensors"})
    for args in (("answer", src, "-q", "a", "-c", "b"), ("validate", src, "--data", squad_file),
                 ("export", src, "-o", tmp_path / "out")):
        assert_one_line_error(run(*args), 2, "has no weights")
    assert not (tmp_path / "out").exists()


def test_model_without_qa_head_or_tokenizer_in_answer_and_validate(tmp_path, roberta_dir, squad_file):
    from transformers import AutoModel

    enc = tmp_path / "encoder"
    AutoModel.from_pretrained(roberta_dir).save_pretrained(enc)
    for f in roberta_dir.iterdir():
        if "token" in f.name or f.name in ("vocab.json", "merges.txt"):
            shutil.copy2(f, enc / f.name)
    assert_one_line_error(run("answer", enc, "-q", "a", "-c", "b"), 2, "not a question-answering model", "finetune")
    notok = copy_model(roberta_dir, tmp_path / "notok", without={"tokenizer.json", "tokenizer_config.json", "vocab.json",
                                                                 "merges.txt", "special_tokens_map.json"})
    assert_one_line_error(run("validate", notok, "--data", squad_file), 2, "no usable tokenizer")


def test_config_that_is_not_a_model_config(tmp_path, roberta_dir):
    src = copy_model(roberta_dir, tmp_path / "badcfg", extra={"config.json": "{not json"})
    assert_one_line_error(run("answer", src, "-q", "a", "-c", "b"), 2, "config.json could not be read")


def test_teacher_and_student_with_different_vocabularies(tmp_path, roberta_dir, bert_dir, squad_file):
    out = tmp_path / "student"
    res = run("distill", roberta_dir, "--student", bert_dir, "--train", squad_file, "-o", out, "--max-length", 64,
              "--doc-stride", 16, "--batch-size", 8, "--no-progress")
    assert_one_line_error(res, 2, "different tokenizer")
    assert not out.exists() and not (tmp_path / "student.work").exists()


# --- names and options --------------------------------------------------------------------------------

@pytest.mark.parametrize("args,needles", [
    (["export", "{model}", "-o", "{tmp}/b", "--precision", "fp8"], ["'--precision'", "'fp8'", "kdtool export --help"]),
    (["export", "{model}", "-o", "{tmp}/b", "--profile", "tpu-v9"], ["unknown device profile 'tpu-v9'", "x86-avx512-vnni"]),
    (["profiles", "tpu-v9"], ["unknown device profile"]),
    (["distill", "{model}", "--student", "huge-99l", "--train", "{data}", "-o", "{tmp}/s"], ["unknown student 'huge-99l'"]),
    (["answer", "{model}", "-q", "a", "-c", "b", "--device", "gpu"], ["unknown device 'gpu'"]),
    (["answer", "{model}", "-q", "a", "-c", "b", "--batch-size", "0"], ["'--batch-size'", "1<=x"]),
    (["validate", "{model}", "--data", "{data}", "--limit", "0"], ["'--limit'"]),
    (["validate", "{model}", "--data", "{data}", "--max-length", "8"], ["max_length must be at least 32"]),
    (["score", "{data}", "{data}", "--lang", "xx"], ["'--lang'", "'xx'"]),
    (["nosuchcommand"], ["No such command 'nosuchcommand'"]),
    (["--bogus", "score"], ["No such option '--bogus'"]),
    (["validate", "{model}"], ["Missing option '--data'"]),
])
def test_unknown_names_and_bad_options_are_one_line_exit_2(tmp_path, roberta_dir, squad_file, args, needles):
    fill = {"model": str(roberta_dir), "data": str(squad_file), "tmp": str(tmp_path)}
    assert_one_line_error(run(*[a.format(**fill) for a in args]), 2, *needles)
    assert not (tmp_path / "b").exists() and not (tmp_path / "s").exists()


def test_debug_shows_the_traceback(tmp_path, squad_file):
    res = run("--debug", "validate", tmp_path / "nope", "--data", squad_file)
    assert res.exit_code == 2
    assert "Traceback (most recent call last)" in res.stderr and "InputError" in res.stderr
    assert res.stderr.rstrip().splitlines()[-1] == f"Error: model not found: {tmp_path / 'nope'}"


def test_operating_system_errors_are_one_line(roberta_dir, tmp_path):
    # a file-size limit (ulimit -f) fails the write with EFBIG: the machine's error, without filling a disk
    import resource
    import subprocess

    out, questions = tmp_path / "a.jsonl", write_jsonl(tmp_path / "q.jsonl", 200)
    res = subprocess.run([*KDTOOL, "answer", str(roberta_dir), "--input", str(questions), "--output", str(out)],
                         capture_output=True, text=True, timeout=300,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (12000, 12000)))
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 1 and len(lines) == 1 and "File too large" in lines[0], res.stderr
    kept = out.read_bytes()
    assert kept.endswith(b"\n") and len(kept) <= 12000, kept[-200:]  # the first chunk's lines, never half a line
    assert all(json.loads(line)["id"] for line in kept.splitlines())
    # /dev/full (or any device, pipe or socket) is no place for an output: refused before the model loads
    assert_one_line_error(run("answer", roberta_dir, "-q", "¿Quién?", "-c", CONTEXT, "--output", "/dev/full"), 2,
                          "character device")


# --- bundles and engines ------------------------------------------------------------------------------

def test_corrupt_onnx_even_with_matching_checksums(bundle):
    data = bytearray((bundle / "model.onnx").read_bytes())
    (bundle / "model.onnx").write_bytes(bytes(data[: len(data) // 3]))  # truncated mid-graph
    _reseal(bundle)
    assert_one_line_error(run("answer", bundle, "-q", "¿Quién?", "-c", CONTEXT), 2, "model.onnx")


def test_onnx_external_data_outside_the_bundle_is_refused(bundle, tmp_path):
    import onnx

    model = onnx.load(str(bundle / "model.onnx"))
    onnx.save_model(model, str(bundle / "model.onnx"), save_as_external_data=True, location="w.data", size_threshold=0)
    _reseal(bundle)  # external data inside the bundle and listed (how a >2 GB model ships): accepted
    assert "w.data" in verify_bundle(bundle)["files"]
    assert run("answer", bundle, "-q", "¿Quién?", "-c", CONTEXT).exit_code == 0
    (bundle / "w.data").rename(tmp_path / "weights.data")  # the weights now live outside the bundle ...
    model = onnx.load(str(bundle / "model.onnx"), load_external_data=False)
    for t in model.graph.initializer:  # ... and the graph points there (onnx itself refuses to write this)
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = "../weights.data"
    (bundle / "model.onnx").write_bytes(model.SerializeToString())
    _reseal(bundle)
    with pytest.raises(IntegrityError, match="leaves the bundle"):
        verify_bundle(bundle)
    assert_one_line_error(run("answer", bundle, "-q", "¿Quién?", "-c", CONTEXT), 2, "leaves the bundle")


def test_manifest_escape_and_extra_file_from_the_cli(bundle):
    (bundle / "notes.txt").write_text("hello")
    assert_one_line_error(run("validate", bundle, "--data", bundle / "config.json"), 2)  # data is checked first
    assert_one_line_error(run("answer", bundle, "-q", "a", "-c", "b"), 2, "notes.txt", "not listed")
    (bundle / "notes.txt").unlink()
    m = json.loads((bundle / MANIFEST).read_text())
    m["model"] = "../../etc/passwd"
    m["files"]["../../etc/passwd"] = {"sha256": "0" * 64, "bytes": 1}
    (bundle / MANIFEST).write_text(json.dumps(m))
    assert_one_line_error(run("answer", bundle, "-q", "a", "-c", "b"), 2, "leaves the bundle")


def test_tensorrt_engine_for_another_gpu_is_refused(tmp_path):
    t4 = {"name": "Tesla T4", "compute_capability": "7.5"}
    h100 = {"name": "NVIDIA H100", "compute_capability": "9.0"}
    a100 = {"name": "NVIDIA A100", "compute_capability": "8.0"}
    check_engine_gpu(h100, dict(h100), "none", tmp_path)
    check_engine_gpu(a100, h100, "ampere_plus", tmp_path)
    check_engine_gpu(None, h100, "none", tmp_path)  # older bundles recorded no GPU: TensorRT checks
    for built, here, level in ((t4, h100, "none"), (a100, h100, "same_compute_capability"), (a100, t4, "ampere_plus")):
        with pytest.raises(IntegrityError) as err:
            check_engine_gpu(built, here, level, tmp_path)
        msg = str(err.value)
        assert "\n" not in msg and built["name"] in msg and here["name"] in msg and "kdtool build-engine" in msg


def test_tensorrt_device_without_an_engine_or_on_a_model_dir(bundle, roberta_dir):
    assert_one_line_error(run("answer", bundle, "-q", "a", "-c", "b", "--device", "tensorrt"), 2,
                          "no TensorRT engine", "kdtool build-engine")
    assert_one_line_error(run("answer", roberta_dir, "-q", "a", "-c", "b", "--device", "tensorrt"), 2,
                          "runs kdtool bundles")


# --- output directories ---------------------------------------------------------------------------------

def test_existing_output_directory_rule(tmp_path, roberta_dir, clean_bundle, squad_file):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    for extra in ([], ["--overwrite"]):  # not a kdtool output: refused even with --overwrite
        line = assert_one_line_error(run("export", roberta_dir, "-o", mine, "--no-fuse", *extra), 2, str(mine))
        assert ("not written by kdtool" in line) if extra else ("--overwrite" in line)
        line = assert_one_line_error(run("validate", roberta_dir, "--data", squad_file, "--predictions-dir", mine, *extra),
                                     2, str(mine))
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    # a kdtool output is replaced with --overwrite, and only then
    old = tmp_path / "old"
    shutil.copytree(clean_bundle, old)
    assert_one_line_error(run("export", roberta_dir, "-o", old, "--no-fuse"), 2, "--overwrite")
    res = run("export", roberta_dir, "-o", old, "--no-fuse", "--precision", "int8", "--overwrite")
    assert res.exit_code == 0, res.output
    assert verify_bundle(old)["precision"] == "int8"
    preds = tmp_path / "preds"
    assert run("validate", roberta_dir, "--data", squad_file, "--limit", 3, "--predictions-dir", preds).exit_code == 0
    assert_one_line_error(run("validate", roberta_dir, "--data", squad_file, "--limit", 3, "--predictions-dir", preds),
                          2, "--overwrite")
    res = run("validate", roberta_dir, "--data", squad_file, "--limit", 3, "--predictions-dir", preds, "--overwrite")
    assert res.exit_code == 0 and sorted(p.name for p in preds.iterdir()) == [".kdtool", "roberta.json"]


def test_answer_output_is_jsonl_that_parses(tmp_path, roberta_dir):
    src = write_jsonl(tmp_path / "q.jsonl", 5)
    out = tmp_path / "a.jsonl"
    res = run("answer", roberta_dir, "--input", src, "--output", out, "--threads", 1)
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"q{i}" for i in range(5)]
    assert all(r["score"] is None or isinstance(r["score"], float) for r in rows)


def test_run_into_a_directory_kdtool_did_not_write_is_refused(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "recipe.yaml").write_text("my own notes\n")
    res = run("run", "minilm-squad-es-cpu", "-o", mine, "--override", f"data.train={tmp_path / 'missing.json'}")
    assert (mine / "recipe.yaml").read_text() == "my own notes\n"
    assert_one_line_error(res, 2, str(mine))


def test_engines_give_back_the_thread_count_they_set(roberta_dir, bert_dir, squad_file):
    """--threads is process-wide in PyTorch: after validate/profile/answer in process (a recipe, a notebook,
    this test suite) the caller's setting is back, so later work (an exact-resume training run) is unchanged."""
    import torch

    before = torch.get_num_threads()
    wanted = 1 if before > 1 else 2
    for args in (("validate", roberta_dir, bert_dir, "--data", squad_file, "--limit", 2, "--threads", wanted),
                 ("profile", roberta_dir, bert_dir, "--seq-len", 16, "--runs", 1, "--warmup", 1, "--threads", wanted),
                 ("answer", roberta_dir, "-q", "¿Quién?", "-c", CONTEXT, "--threads", wanted)):
        assert run(*args).exit_code == 0
        assert torch.get_num_threads() == before, args[0]
