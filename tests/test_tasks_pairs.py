"""Sentence-pair matching: pair files, the metric, the QNLI-style derivation from SQuAD (hand-made
cases and the real SQuAD-es pool), and a pair classifier through export, validate and profile."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from kdtool.cli import main
from kdtool.data import Answer, Example
from kdtool.errors import InputError
from kdtool.tasks import detect_task
from kdtool.tasks.derive import derive_pairs, split_sentences
from kdtool.tasks.pairs import PairExample, load_pairs, pair_metrics


def test_jsonl_and_tsv_pairs_with_glue_columns_and_label_names(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"id": "x", "question": "¿Qué?", "sentence": "Esto.", "label": "entailment"}\n\n'
                                      '{"id": "y", "question": "¿Dónde?", "sentence": "Aquí.", "label": 0}\n')
    ds = load_pairs(tmp_path / "a.jsonl")
    assert [(e.id, e.label) for e in ds.examples] == [("x", 1), ("y", 0)] and ds.columns == ("question", "sentence")
    (tmp_path / "b.tsv").write_text("id\tsentence1\tsentence2\tlabel\n1\tUna frase.\tOtra frase.\t1\n2\tA\tB\t0\n")
    ds = load_pairs(tmp_path / "b.tsv")
    assert [(e.text_a, e.text_b, e.label) for e in ds.examples] == [("Una frase.", "Otra frase.", 1), ("A", "B", 0)]
    (tmp_path / "c.jsonl").write_text('{"premise": "p", "hypothesis": "h", "label": "maybe"}\n')
    with pytest.raises(InputError, match=r"c.jsonl:1: label 'maybe'"):
        load_pairs(tmp_path / "c.jsonl")
    (tmp_path / "d.jsonl").write_text('{"foo": "p", "bar": "h", "label": 1}\n')
    with pytest.raises(InputError, match="no text columns"):
        load_pairs(tmp_path / "d.jsonl")


def test_pair_metrics_accuracy_and_positive_f1():
    ex = [PairExample(str(i), "a", "b", g) for i, g in enumerate([1, 1, 0, 0, 1])]
    m = pair_metrics(ex, {"0": 1, "1": 0, "2": 0, "3": 1, "4": 1})
    assert m["accuracy"] == pytest.approx(60.0)
    assert m["f1"] == pytest.approx(100 * 2 * 2 / (2 * 2 + 1 + 1))  # tp 2, fp 1, fn 1
    assert pair_metrics(ex, {"0": 1})["missing"] == 4


CONTEXT = ("El Museo del Prado abrió en 1819 en Madrid. Guarda obras de Goya y de Velázquez. "
           "El Sr. Pérez, director desde 2001, vive en EE. UU. durante el verano. ¿Quién lo fundó? Fernando VII.")


def _ex(qid, question, answer, context=CONTEXT):
    return Example(qid, question, context, (Answer(answer, context.index(answer)),))


def test_sentences_split_on_boundaries_but_not_abbreviations():
    spans = [CONTEXT[s.start:s.end] for s in split_sentences(CONTEXT)]
    assert spans == ["El Museo del Prado abrió en 1819 en Madrid.", "Guarda obras de Goya y de Velázquez.",
                     "El Sr. Pérez, director desde 2001, vive en EE. UU. durante el verano.", "¿Quién lo fundó?",
                     "Fernando VII."]


def test_derived_labels_on_hand_made_cases():
    rows, report = derive_pairs([_ex("q1", "¿De quién guarda obras el museo?", "Goya"),
                                 _ex("q2", "¿Desde cuándo es director el Sr. Pérez?", "2001")], negatives=1)
    by_q = {(r["squad_id"], r["label"]): r["sentence"] for r in rows}
    assert by_q[("q1", 1)] == "Guarda obras de Goya y de Velázquez."
    assert by_q[("q2", 1)].startswith("El Sr. Pérez, director desde 2001")
    # the hard negative shares the most words with the question ("museo" beats the rest for q1)
    assert by_q[("q1", 0)] == "El Museo del Prado abrió en 1819 en Madrid."
    assert report["positives"] == 2 and report["negatives"] == 2 and len(rows) == 4
    every, _ = derive_pairs([_ex("q1", "¿De quién?", "Goya")], negatives=None)
    assert sorted(r["label"] for r in every) == [0, 0, 0, 0, 1]


def test_no_sentence_is_split_inside_an_answer():
    context = "Ganó el premio en 2001. Después se retiró a Toledo. Murió allí."
    spanning = _ex("q1", "¿Qué pasó?", "2001. Después se retiró", context)
    rows, report = derive_pairs([spanning, _ex("q2", "¿Dónde murió?", "allí", context)], negatives=None)
    positives = [r["sentence"] for r in rows if r["squad_id"] == "q1" and r["label"] == 1]
    assert positives == ["Ganó el premio en 2001. Después se retiró a Toledo."]
    assert report["merged_boundaries"] == 1
    assert {r["sentence"] for r in rows} == {"Ganó el premio en 2001. Después se retiró a Toledo.", "Murió allí."}


def test_real_pool_every_positive_holds_an_answer_and_no_answer_is_cut(squad_es_v11, tmp_path):
    from kdtool.data import load_squad

    ds = load_squad(squad_es_v11)
    out = tmp_path / "pairs.jsonl"
    res = CliRunner().invoke(main, ["derive-pairs", str(squad_es_v11), "-o", str(out)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    by_id = {e.id: e for e in ds.examples}
    positives = {}
    for r in rows:
        e = by_id[r["squad_id"]]
        assert r["sentence"] in e.context
        holds = any(a.text in r["sentence"] for a in e.answers)
        if r["label"] == 1:
            assert holds, r
            positives[e.id] = positives.get(e.id, 0) + 1
    assert set(positives) == set(by_id)  # every question has a positive
    by_context = {}
    for e in ds.examples:
        by_context.setdefault(e.context, []).extend((a.start, a.end) for a in e.answers)
    for context, spans in by_context.items():
        sentences = split_sentences(context, spans)
        for s, t in spans:
            assert sum(x.holds(s, t) for x in sentences) == 1
    loaded = load_pairs(out)
    assert len(loaded) == len(rows) and 0.4 < sum(e.label for e in loaded.examples) / len(loaded) < 0.6


@pytest.fixture(scope="module")
def pair_model(tmp_path_factory, wordpiece_tokenizer):
    import torch
    from transformers import AutoModelForSequenceClassification, BertConfig

    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(wordpiece_tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, pad_token_id=wordpiece_tokenizer.pad_token_id,
                        num_labels=2, architectures=["BertForSequenceClassification"])
    out = tmp_path_factory.mktemp("pair") / "bert-pairs"
    AutoModelForSequenceClassification.from_config(config).save_pretrained(out)
    wordpiece_tokenizer.save_pretrained(out)
    return out


def test_pair_classifier_exports_validates_and_profiles(tmp_path, pair_model, squad_file):
    from kdtool.export import ExportConfig, export_model

    pairs = tmp_path / "pairs.jsonl"
    assert CliRunner().invoke(main, ["derive-pairs", str(squad_file), "-o", str(pairs), "--all-sentences"]).exit_code == 0
    bundle = export_model(ExportConfig(pair_model, tmp_path / "bundle", precision="int8", max_seq_length=64))
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["task"] == "text-classification" and [o["name"] for o in manifest["outputs"]] == ["logits"]
    assert manifest["parity"]["plain_onnx"]["max_abs_logit_diff"] < 1e-4 and manifest["fusion"]
    assert detect_task(bundle) == detect_task(pair_model) == "pair-classification"
    report = tmp_path / "v.json"
    res = CliRunner().invoke(main, ["validate", str(pair_model), str(bundle), "--data", str(pairs), "--max-length", "64",
                                    "--doc-stride", "16",
                                    "--json", str(report), "--max-f1-drop", "100"])
    assert res.exit_code == 0, res.output
    assert "acc" in res.output and "(reference)" in res.output
    result = json.loads(report.read_text())
    assert result["task"] == "pair-classification" and result["passed"]
    ref, cand = result["models"]
    assert 0 <= ref["accuracy"] <= 100 and cand["agreement"] > 50 and cand["kind"] == "onnxruntime"
    assert cand["accuracy_drop"] == pytest.approx(ref["accuracy"] - cand["accuracy"])
    res = CliRunner().invoke(main, ["profile", str(pair_model), str(bundle), "--seq-len", "32", "--runs", "2",
                                    "--warmup", "1", "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "bert-pairs" in res.stdout and "bundle" in res.stdout
