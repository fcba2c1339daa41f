"""The demo's synthetic Spanish QA generator: exact offsets, disjoint splits, determinism, variety."""

import re

import pytest

from kdtool.data import parse_squad
from kdtool.demo.synthetic import ACTIONS, AUDIENCES, CITIES, QUESTION_TYPES, SyntheticConfig, generate, render
from kdtool.errors import InputError

SMALL = SyntheticConfig(train_paragraphs=120, dev_paragraphs=40, seed=3)
TYPE_OF_ID = {"quien": "quién", "cuando": "cuándo", "donde": "dónde", "cuantos": "cuántos", "que": "qué"}
NAME = r"[A-ZÁÉÍÓÚ][a-záéíóúñ]+ [A-ZÁÉÍÓÚ][a-záéíóúñ]+"
WORKS = {w for works in ACTIONS.values() for w in works}


def paragraphs(obj):
    return [p for art in obj["data"] for p in art["paragraphs"]]


def qas(obj):
    return [(p["context"], qa) for p in paragraphs(obj) for qa in p["qas"]]


def events_in(context: str) -> set[tuple[str, str, str]]:
    """(person, verb, work) of every event a context tells: the templates write them contiguously."""
    found = set()
    for verb, works in ACTIONS.items():
        for work in works:
            for m in re.finditer(rf"({NAME}) {verb} {re.escape(work)}", context):
                found.add((m.group(1), verb, work))
    return found


@pytest.fixture(scope="module")
def splits():
    return generate(SMALL)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_every_answer_is_the_substring_at_its_offset(seed):
    for split in generate(SyntheticConfig(train_paragraphs=60, dev_paragraphs=20, seed=seed)):
        for context, qa in qas(split):
            (ans,) = qa["answers"]
            assert ans["text"] and context[ans["answer_start"]:ans["answer_start"] + len(ans["text"])] == ans["text"]
        ds = parse_squad(split, "synthetic")  # strict: an offset it had to repair would be counted
        assert ds.report.offsets_repaired == 0 and ds.report.questions_dropped_no_answer == 0


def test_sizes_and_question_types(splits):
    train, dev = splits
    assert len(paragraphs(train)) == SMALL.train_paragraphs and len(paragraphs(dev)) == SMALL.dev_paragraphs
    for p in paragraphs(train) + paragraphs(dev):
        types = sorted(TYPE_OF_ID[qa["id"].rsplit("-", 1)[1]] for qa in p["qas"])
        assert types == sorted(QUESTION_TYPES)
        assert all(qa["question"].startswith("¿") and qa["question"].endswith("?") for qa in p["qas"])
    ids = [qa["id"] for _, qa in qas(train) + qas(dev)]
    assert len(ids) == len(set(ids))


def test_answers_have_the_type_the_question_asks_for(splits):
    for _context, qa in qas(splits[0]) + qas(splits[1]):
        kind, text = TYPE_OF_ID[qa["id"].rsplit("-", 1)[1]], qa["answers"][0]["text"]
        if kind == "quién":
            assert re.fullmatch(NAME, text), text
        elif kind == "cuándo":
            assert re.fullmatch(r"1[5-9]\d\d|20[0-2]\d", text), text
        elif kind == "dónde":
            assert text in CITIES
        elif kind == "cuántos":
            assert re.fullmatch(r"\d{2,3}", text) and any(a in qa["question"] for a in AUDIENCES)
        else:
            assert text in WORKS


def test_contexts_hold_distractors_of_every_answer_type(splits):
    for p in paragraphs(splits[0]) + paragraphs(splits[1]):
        ctx = p["context"]
        assert len(events_in(ctx)) == 1  # the event asked about; the other people act in other roles
        people = {name for name in re.findall(NAME, ctx) if not name.startswith("Desde ")}  # "Desde Segovia"
        assert len(people) == 2, people
        assert sum(c in ctx for c in CITIES) >= 2
        assert len(set(re.findall(r"\b1[5-9]\d\d\b|\b20[0-2]\d\b", ctx))) == 2
        assert len(re.findall(r"\b\d{2,3}\b", ctx)) >= 2  # two counts
        assert sum(w in ctx for w in WORKS) >= 2
        for qa in p["qas"]:  # another entity of the answer's type is in the context too
            text = qa["answers"][0]["text"]
            kind = TYPE_OF_ID[qa["id"].rsplit("-", 1)[1]]
            pool = {"quién": people, "dónde": {c for c in CITIES if c in ctx}, "qué": {w for w in WORKS if w in ctx},
                    "cuándo": set(re.findall(r"\b1[5-9]\d\d\b|\b20[0-2]\d\b", ctx)),
                    "cuántos": set(re.findall(r"\b\d{2,3}\b", ctx))}[kind]
            assert text in pool and len(pool - {text}) >= 1


def test_the_event_comes_first_or_second():
    train, _ = generate(SyntheticConfig(train_paragraphs=200, dev_paragraphs=1, seed=2))
    first = sum(p["qas"][0]["answers"][0]["answer_start"] < p["context"].index(". ") for p in paragraphs(train))
    assert 60 < first < 140  # about half: the position of a sentence does not give the answer away


def test_phrasing_varies(splits):
    train = qas(splits[0])
    for kind in QUESTION_TYPES:
        openings = {" ".join(qa["question"].split()[:2]) for _, qa in train if TYPE_OF_ID[qa["id"].rsplit("-", 1)[1]] == kind}
        assert len(openings) >= 3, (kind, openings)
    starts = {p["context"].split(",")[0].split()[0] for p in paragraphs(splits[0])}
    assert len(starts) >= 5  # several sentence templates open the contexts


def test_splits_share_no_context_and_no_event(splits):
    train, dev = splits
    train_ctx, dev_ctx = {p["context"] for p in paragraphs(train)}, {p["context"] for p in paragraphs(dev)}
    assert not train_ctx & dev_ctx
    train_events = set().union(*(events_in(c) for c in train_ctx))
    dev_events = set().union(*(events_in(c) for c in dev_ctx))
    assert len(train_events) == SMALL.train_paragraphs and len(dev_events) == SMALL.dev_paragraphs
    assert not train_events & dev_events


def test_split_membership_does_not_depend_on_sizes():
    _, small_dev = generate(SyntheticConfig(train_paragraphs=10, dev_paragraphs=30, seed=5))
    big_train, _ = generate(SyntheticConfig(train_paragraphs=300, dev_paragraphs=5, seed=5))
    dev_events = set().union(*(events_in(p["context"]) for p in paragraphs(small_dev)))
    train_events = set().union(*(events_in(p["context"]) for p in paragraphs(big_train)))
    assert dev_events and not dev_events & train_events


def test_deterministic_per_seed():
    a = generate(SyntheticConfig(train_paragraphs=30, dev_paragraphs=10, seed=11))
    b = generate(SyntheticConfig(train_paragraphs=30, dev_paragraphs=10, seed=11))
    c = generate(SyntheticConfig(train_paragraphs=30, dev_paragraphs=10, seed=12))
    assert a == b
    assert a[0] != c[0] and a[1] != c[1]


def test_render_records_slot_spans():
    text, spans = render("En {year}, {person} vio {count} barcos; {person} volvió en {year}.",
                         {"year": "1843", "person": "Ana Vega", "count": "184"})
    assert text == "En 1843, Ana Vega vio 184 barcos; Ana Vega volvió en 1843."
    for slot, (a, b) in spans.items():
        assert text[a:b] == {"year": "1843", "person": "Ana Vega", "count": "184"}[slot]
    assert spans["year"] == (text.rindex("1843"), text.rindex("1843") + 4)  # the last occurrence is recorded


@pytest.mark.parametrize("kwargs", [{"train_paragraphs": 0}, {"dev_paragraphs": 0}, {"dev_share": 1.0}])
def test_bad_sizes_are_input_errors(kwargs):
    with pytest.raises(InputError):
        SyntheticConfig(**kwargs)
