"""kdtool answer with a model directory and with bundles: same pre/post-processing, JSONL in and out."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from kdtool.cli import main
from kdtool.export.config import ExportConfig
from kdtool.export.pipeline import export_model

CONTEXT = "En 1905, María López construyó un puente en Sevilla. Años después, la obra fue visitada por viajeros."


@pytest.fixture(scope="module")
def fp32_bundle(tmp_path_factory, roberta_dir):
    return export_model(ExportConfig(roberta_dir, tmp_path_factory.mktemp("answer") / "bundle"))


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_bundle_and_model_give_the_same_answer_with_offsets(roberta_dir, fp32_bundle):
    rows = []
    for model in (roberta_dir, fp32_bundle):
        result = run("answer", model, "--question", "¿Quién construyó un puente?", "--context", CONTEXT)
        assert result.exit_code == 0, result.output
        rows.append(json.loads(result.stdout))
    assert rows[0]["answer"] == rows[1]["answer"] and abs(rows[0]["score"] - rows[1]["score"]) < 1e-3
    row = rows[1]
    assert set(row) == {"id", "answer", "start", "end", "score"}
    assert CONTEXT[row["start"]:row["end"]] == row["answer"] != ""


def test_jsonl_in_and_out(fp32_bundle, tmp_path, squad_obj):
    para = squad_obj["data"][0]["paragraphs"][0]
    src = tmp_path / "q.jsonl"
    src.write_text("\n".join(json.dumps({"id": qa["id"], "question": qa["question"], "context": para["context"]},
                                        ensure_ascii=False) for qa in para["qas"]) + "\n")
    out = tmp_path / "answers.jsonl"
    result = run("answer", fp32_bundle, "--input", src, "--output", out, "--device", "cpu", "--threads", "1")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [qa["id"] for qa in para["qas"]]
    assert all(para["context"][r["start"]:r["end"]] == r["answer"] for r in rows)


def test_bad_input_is_one_line(fp32_bundle, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "¿Quién?"}\n')
    result = run("answer", fp32_bundle, "--input", bad)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "context" in result.stderr
    assert run("answer", fp32_bundle, "--question", "¿Quién?").exit_code == 2  # usage error: no context
    missing = run("answer", tmp_path / "nothing", "-q", "a", "-c", "b")
    assert missing.exit_code == 2 and "not found" in missing.stderr


def test_engine_loader_opens_bundles_for_validate(fp32_bundle, squad_file):
    """kdtool validate opens every model through kdtool.engines.load_engine; bundles answer there too."""
    from kdtool.data import load_squad
    from kdtool.engines import load_engine
    from kdtool.metrics import squad_evaluate
    from kdtool.predict import predict

    engine = load_engine(fp32_bundle, device="cpu", threads=1, trust_remote_code=False)
    data = load_squad(squad_file)
    preds = predict(engine, data.examples)
    scores = squad_evaluate(data.examples, {k: p.text for k, p in preds.items()}, lang="es")
    assert len(preds) == len(data.examples) and 0 <= scores["f1"] <= 100
    assert engine.describe()["kind"] == "onnxruntime" and engine.describe()["precision"] == "fp32"


def test_validate_takes_bundles_as_reference_and_candidate(fp32_bundle, roberta_dir, squad_file, tmp_path):
    out = tmp_path / "validate.json"
    result = run("validate", fp32_bundle, roberta_dir, fp32_bundle, "--data", squad_file, "--lang", "es",
                 "--json", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert str(fp32_bundle.name) in text and "onnxruntime" in text
