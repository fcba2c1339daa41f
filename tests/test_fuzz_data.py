"""Property tests of the data path over arbitrary Unicode: accents, emoji, right-to-left text,
combining marks and byte-order marks. Features must map back to the exact answer substring,
post-processing must never leave the context, and the metric must never fail."""

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kdtool.data import FeatureConfig, PostprocessConfig, postprocess, tokenize_examples
from kdtool.data.squad import Answer, Example
from kdtool.metrics import score_question

SPECIAL = ["\ufeff", "😀", "👩‍👩‍👧", "שלום", "مرحبا", "e\u0301", "ñ", "Ü", "\u200f", "日本", "ß", "İ"]
word = st.one_of(
    st.sampled_from(["casa", "Sevilla", "año", "1900", "María", "niño", "¿Qué", "hoy?"] + SPECIAL),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=6),
)
words = st.lists(word, min_size=3, max_size=40)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _example(ws, i, j, question="¿Qué?"):
    context = " ".join(ws)
    start = len(" ".join(ws[:i])) + (1 if i else 0)
    text = " ".join(ws[i:j])
    assert context[start:start + len(text)] == text
    return Example("q", question, context, (Answer(text, start),))


@SETTINGS
@given(ws=words, data=st.data(), kind=st.sampled_from(["bpe_tokenizer", "wordpiece_tokenizer"]))
def test_features_map_back_to_the_answer(request, ws, data, kind):
    tok = request.getfixturevalue(kind)
    i = data.draw(st.integers(0, len(ws) - 1))
    j = data.draw(st.integers(i + 1, min(len(ws), i + 3)))
    ex = _example(ws, i, j)
    feats = tokenize_examples([ex], tok, FeatureConfig(max_length=48, doc_stride=16), with_labels=True)
    a = ex.answers[0]
    labelled = 0
    for k in range(len(feats)):
        ctx = [o for o in feats.offsets[k] if o is not None]
        inside = [o for o in ctx if o[0] < a.end and o[1] > a.start]  # tokens that carry answer characters
        # the window holds the answer unless it is cut on a side; the first and last windows are not
        # cut (characters the tokenizer drops, e.g. a soft hyphen, may lie beyond their tokens)
        fits = inside and (k == 0 or ctx[0][0] <= a.start) and (k == len(feats) - 1 or a.end <= ctx[-1][1])
        s, e = feats.start_positions[k], feats.end_positions[k]
        if not fits:
            assert s == e == 0  # the window does not hold the answer: the target is CLS
            continue
        labelled += 1
        got = ex.context[feats.offsets[k][s][0]:feats.offsets[k][e][1]]
        if inside[0][0] == a.start and inside[-1][1] == a.end:
            assert got == a.text  # answer edges on token edges: recovered exactly
        else:  # an edge inside a token or on characters the tokenizer drops (a BOM, say)
            assert got == ex.context[inside[0][0]:inside[-1][1]]
    carried = sum(o is not None and o[0] < a.end and o[1] > a.start for o in feats.offsets[0])
    if len(feats) == 1 and 0 < carried <= 8:
        assert labelled == 1  # a short answer in a context that fits one window is always labelled


@SETTINGS
@given(ws=words, seed=st.integers(0, 2**16), q=st.text(max_size=30))
def test_postprocess_never_leaves_the_context(bpe_tokenizer, wordpiece_tokenizer, ws, seed, q):
    ex = Example("q", q or "?", " ".join(ws), ())
    rng = np.random.default_rng(seed)
    for tok in (bpe_tokenizer, wordpiece_tokenizer):
        feats = tokenize_examples([ex], tok, FeatureConfig(max_length=40, doc_stride=10))
        starts = [rng.normal(size=len(x)) * 5 for x in feats.input_ids]
        ends = [rng.normal(size=len(x)) * 5 for x in feats.input_ids]
        p = postprocess([ex], feats, starts, ends, PostprocessConfig(n_best=5, max_answer_length=6))["q"]
        assert p.text == ex.context[p.start:p.end] if p.start >= 0 else p.text == ""


@settings(max_examples=300, deadline=None)
@given(a=st.text(), b=st.text(), lang=st.sampled_from(["en", "es"]))
def test_metric_never_fails(a, b, lang):
    em, f = score_question(a, [b], lang)
    assert 0.0 <= em <= f <= 1.0


@SETTINGS
@given(ws=words, data=st.data(), bom=st.booleans())
def test_loader_round_trips_any_unicode_and_offsets_point_at_the_answer(ws, data, bom):
    import json

    from kdtool.data import parse_squad, to_squad_json

    i = data.draw(st.integers(0, len(ws) - 1))
    j = data.draw(st.integers(i + 1, min(len(ws), i + 3)))
    ex = _example(ws, i, j, question=data.draw(st.text(min_size=1, max_size=20).filter(str.strip)))
    if bom:  # a context that starts with a byte-order mark, offsets counted without it (SQuAD-es)
        a = ex.answers[0]
        ex = Example("q", ex.question, "\ufeff" + ex.context, (Answer(a.text, a.start),))
    assume(ex.answers[0].text.strip())
    ds = parse_squad(json.loads(json.dumps(to_squad_json([ex]), ensure_ascii=False)), "fuzz.json")
    got = ds.examples[0]
    a = got.answers[0]
    assert got.context[a.start:a.end] == a.text == ex.answers[0].text
    assert ds.report.offsets_repaired in ((0, 1) if bom else (0,))  # the BOM shift is repaired, nothing else


@SETTINGS
@given(ws=words, seed=st.integers(0, 2**16), bad=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_postprocess_survives_non_finite_logits(bpe_tokenizer, ws, seed, bad):
    """An FP16 engine that overflows returns inf/NaN: answers stay inside the context and JSON-safe."""
    import json

    ex = Example("q", "¿Qué?", " ".join(ws), ())
    feats = tokenize_examples([ex], bpe_tokenizer, FeatureConfig(max_length=40, doc_stride=10))
    rng = np.random.default_rng(seed)
    starts = [np.where(rng.random(len(x)) < 0.3, bad, rng.normal(size=len(x))) for x in feats.input_ids]
    ends = [np.where(rng.random(len(x)) < 0.3, bad, rng.normal(size=len(x))) for x in feats.input_ids]
    p = postprocess([ex], feats, starts, ends, PostprocessConfig(n_best=5, max_answer_length=6))["q"]
    assert p.text == ex.context[p.start:p.end] if p.start >= 0 else p.text == ""
    json.dumps(p.to_dict(), allow_nan=False)
