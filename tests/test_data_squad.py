"""Loading SQuAD files: validation, repair of offsets, counts on the real Spanish data."""

import json

import pytest

from kdtool.data import load_squad, parse_squad, split_by_article, to_squad_json
from kdtool.errors import InputError


def _one(context, answers, **qa):
    return {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": [
        {"id": "q1", "question": "¿Qué?", "answers": answers, **qa}]}]}]}


def test_bom_shift_is_repaired_and_counted():
    ctx = "\ufeffHola, Sevilla es bonita."
    start_without_bom = ctx.index("Sevilla") - 1
    ds = parse_squad(_one(ctx, [{"text": "Sevilla", "answer_start": start_without_bom}]), "x.json")
    assert ds.report.offsets_repaired == 1
    ans = ds.examples[0].answers[0]
    assert ctx[ans.start:ans.end] == "Sevilla"


def test_empty_answers_dropped_and_question_without_answer_dropped():
    obj = _one("Sevilla es bonita.", [{"text": "", "answer_start": 0}, {"text": "Sevilla", "answer_start": 0}])
    obj["data"][0]["paragraphs"][0]["qas"].append({"id": "q2", "question": "?", "answers": [{"text": " ", "answer_start": 3}]})
    ds = parse_squad(obj, "x.json")
    assert [e.id for e in ds.examples] == ["q1"]
    assert ds.report.answers_dropped_empty == 2
    assert ds.report.questions_dropped_no_answer == 1


def test_unrepairable_offset_names_the_record():
    obj = _one("Sevilla es bonita.", [{"text": "bonita", "answer_start": 0}])
    with pytest.raises(InputError, match=r"data\[0\]\.paragraphs\[0\]\.qas\[0\]\.answers\[0\]"):
        parse_squad(obj, "x.json")
    ds = parse_squad(obj | {"data": obj["data"] + [_one("Hola Sevilla", [{"text": "Sevilla", "answer_start": 5}])["data"][0]]},
                     "x.json", strict=False)
    assert ds.report.answers_dropped_bad_offset == 1 and len(ds) == 1


@pytest.mark.parametrize("obj,where", [
    ({"version": "1.1"}, "top level"),
    ({"data": [{"title": "t"}]}, r"data\[0\]"),
    ({"data": [{"paragraphs": [{"qas": []}]}]}, r"data\[0\]\.paragraphs\[0\]"),
    ({"data": [{"paragraphs": [{"context": "c", "qas": [{"question": "q"}]}]}]}, r"qas\[0\]"),
    ({"data": [{"paragraphs": [{"context": "c", "qas": [{"id": 1, "question": "q", "answers": [{"text": "c"}]}]}]}]},
     r"answers\[0\]"),
])
def test_malformed_file_names_json_path(obj, where):
    with pytest.raises(InputError, match=where):
        parse_squad(obj, "bad.json")


def test_v2_unanswerable_and_plausible():
    obj = _one("Sevilla es bonita.", [], is_impossible=True, plausible_answers=[{"text": "Sevilla", "answer_start": 0}])
    ds = parse_squad(obj, "x.json")
    assert ds.is_v2 and ds.examples[0].is_impossible and ds.examples[0].plausible_answers[0].text == "Sevilla"


def test_roundtrip_json(squad_obj):
    ds = parse_squad(squad_obj, "x.json")
    again = parse_squad(json.loads(json.dumps(to_squad_json(ds))), "y.json")
    assert again.examples == ds.examples


def test_split_by_article_is_disjoint_and_deterministic(squad_obj):
    ds = parse_squad(squad_obj, "x.json")
    train, dev = split_by_article(ds, 0.34, seed=3)
    assert {e.title for e in train.examples}.isdisjoint({e.title for e in dev.examples})
    assert len(train) + len(dev) == len(ds)
    assert [e.id for e in split_by_article(ds, 0.34, seed=3)[1].examples] == [e.id for e in dev.examples]


def test_real_squad_es_v11(squad_es_v11):
    ds = load_squad(squad_es_v11)
    assert ds.version == "1.1"
    assert len(ds) == 5851  # the README's count: no question has only empty answers
    assert ds.report.answers_dropped_empty > 0
    assert "empty answers dropped" in ds.report.summary()
    for e in ds.examples:
        assert e.answers and all(e.context[a.start:a.end] == a.text for a in e.answers)


def test_real_squad_es_v20(squad_es_v20):
    ds = load_squad(squad_es_v20)
    assert ds.is_v2 and len(ds) == 6138
    assert 0 < ds.report.unanswerable < len(ds)
    assert all(not e.answers for e in ds.examples if e.is_impossible)
