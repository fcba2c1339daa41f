"""`kdtool score` and `kdtool validate` end to end on tiny real models, and their bad input."""

import json

import pytest
from click.testing import CliRunner

from kdtool.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def assert_one_line_error(res, code=2):
    assert res.exit_code == code, res.output
    err = res.stderr.strip()
    assert err.startswith("Error:") and "\n" not in err and "Traceback" not in res.output, err


def test_score_perfect_and_partial(squad_file, squad_obj, tmp_path):
    qas = [qa for a in squad_obj["data"] for p in a["paragraphs"] for qa in p["qas"]]
    preds = {qa["id"]: qa["answers"][0]["text"] for qa in qas}
    pf = tmp_path / "p.json"
    pf.write_text(json.dumps(preds))
    res = run("score", squad_file, pf, "--lang", "es")
    assert res.exit_code == 0
    out = json.loads(res.stdout)
    assert out["exact_match"] == 100.0 and out["f1"] == 100.0 and out["total"] == len(qas)
    del preds[qas[0]["id"]]
    pf.write_text(json.dumps(preds))
    out = json.loads(run("score", squad_file, pf).stdout)
    assert out["missing"] == 1 and out["exact_match"] == pytest.approx(100.0 * (len(qas) - 1) / len(qas))


def test_validate_models_and_predictions_match_score(roberta_dir, bert_dir, squad_file, tmp_path):
    pred_dir, js = tmp_path / "preds", tmp_path / "v.json"
    res = run("validate", roberta_dir, bert_dir, "--data", squad_file, "--lang", "es", "--json", js,
              "--predictions-dir", pred_dir, "--max-length", 64, "--doc-stride", 16)
    assert res.exit_code == 0, res.output
    result = json.loads(js.read_text())
    ref, cand = result["models"]
    assert ref["path"] == str(roberta_dir) and cand["f1_drop"] == pytest.approx(ref["f1"] - cand["f1"])
    assert 0.0 <= cand["agreement"] <= 100.0 and result["data"]["questions_scored"] == 72
    for m, name in ((ref, "roberta"), (cand, "bert")):
        scored = json.loads(run("score", squad_file, pred_dir / f"{name}.json", "--lang", "es").stdout)
        assert scored["f1"] == pytest.approx(m["f1"]) and scored["exact_match"] == pytest.approx(m["exact_match"])
    assert "roberta" in res.stdout and "reference" in res.stdout


def test_validate_budget_gate(roberta_dir, squad_file, tmp_path):
    js = tmp_path / "v.json"
    same = run("validate", roberta_dir, roberta_dir, "--data", squad_file, "--max-f1-drop", 0, "--limit", 10, "--json", js)
    assert same.exit_code == 0 and json.loads(js.read_text())["models"][1]["agreement"] == 100.0
    # a budget below zero asks the candidate to beat the reference: the identical model cannot
    worse = run("validate", roberta_dir, roberta_dir, "--data", squad_file, "--max-f1-drop", -1, "--limit", 10)
    assert worse.exit_code == 1 and "FAIL" in worse.stderr


@pytest.mark.parametrize("content,match", [
    (None, "not found"),
    ("{not json", "not valid JSON"),
    ('{"version": "1.1", "rows": []}', "not a SQuAD file"),
    ('{"data": [{"paragraphs": [{"context": "abc", "qas": [{"id": "1", "question": "q", '
     '"answers": [{"text": "zzz", "answer_start": 0}]}]}]}]}', r"answers\[0\]: answer_start 0 does not point"),
])
def test_bad_data_is_one_line(tmp_path, roberta_dir, content, match):
    f = tmp_path / "data.json"
    if content is not None:
        f.write_text(content)
    for args in (("score", f, f), ("validate", roberta_dir, "--data", f)):
        res = run(*args)
        assert_one_line_error(res)
        assert match.split("\\")[0].split("(")[0] in res.stderr or __import__("re").search(match, res.stderr)


def test_bad_model_paths_are_one_line(tmp_path, squad_file, roberta_dir):
    assert_one_line_error(run("validate", tmp_path / "nope", "--data", squad_file))
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run("validate", tmp_path / "empty", "--data", squad_file))
    assert_one_line_error(run("validate", roberta_dir, "--data", tmp_path))  # a directory where a file belongs
    bad_preds = tmp_path / "preds.json"
    bad_preds.write_text("[1, 2]")
    assert_one_line_error(run("score", squad_file, bad_preds))


def test_hub_dataset_name_without_hub_is_one_line(tmp_path):
    """A name that is not a file is tried as a Hugging Face dataset; offline (or without the
    datasets package) that is one line naming it, never a traceback."""
    preds = tmp_path / "p.json"
    preds.write_text("{}")
    res = run("score", "someorg/squad_es_missing", preds)
    assert_one_line_error(res)
    assert "someorg/squad_es_missing" in res.stderr and "local SQuAD JSON file" in res.stderr
