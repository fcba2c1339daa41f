"""Features and post-processing with real WordPiece and byte-level BPE tokenizers."""

import numpy as np
import pytest

from kdtool.data import FeatureConfig, PostprocessConfig, load_squad, parse_squad, postprocess, tokenize_examples
from kdtool.data.squad import Answer, Example


@pytest.fixture(params=["bpe_tokenizer", "wordpiece_tokenizer"])
def tokenizer(request):
    return request.getfixturevalue(request.param)


def _span_text(ex, feats, i):
    s, e = feats.start_positions[i], feats.end_positions[i]
    return ex.context[feats.offsets[i][s][0]:feats.offsets[i][e][1]]


def test_gold_span_round_trip(tokenizer, squad_obj):
    ds = parse_squad(squad_obj, "tiny.json")
    feats = tokenize_examples(ds.examples, tokenizer, FeatureConfig(max_length=32, doc_stride=8), with_labels=True)
    assert len(feats) > len(ds)  # short windows: contexts were split
    recovered = set()
    for i, ex_idx in enumerate(feats.example_index):
        ex = ds.examples[ex_idx]
        if feats.start_positions[i] == 0:  # answer not inside this window: target is CLS
            ctx = [o for o in feats.offsets[i] if o is not None]
            assert not (ctx[0][0] <= ex.answers[0].start and ex.answers[0].end <= ctx[-1][1])
            continue
        assert _span_text(ex, feats, i) == ex.answers[0].text
        recovered.add(ex_idx)
    assert recovered == set(range(len(ds)))  # every answer fits some window and survives


def test_real_word_aligned_answers_survive(tokenizer, squad_es_v11):
    ds = load_squad(squad_es_v11)
    examples = ds.examples[:300]
    feats = tokenize_examples(examples, tokenizer, FeatureConfig(max_length=384, doc_stride=128), with_labels=True)
    def aligned(ex):
        a = ex.answers[0]
        before = ex.context[a.start - 1] if a.start else " "
        after = ex.context[a.end] if a.end < len(ex.context) else " "
        return not before.isalnum() and not after.isalnum() and a.text == a.text.strip()
    checked = 0
    for i, ex_idx in enumerate(feats.example_index):
        ex = examples[ex_idx]
        if feats.start_positions[i] and aligned(ex):
            assert _span_text(ex, feats, i) == ex.answers[0].text
            checked += 1
    assert checked > 200


def test_question_never_truncates_context(tokenizer):
    ex = Example("q", "¿Quién " * 200 + "?", "María vive en Sevilla.", (Answer("Sevilla", 14),))
    feats = tokenize_examples([ex], tokenizer, FeatureConfig(max_length=64, doc_stride=16, max_query_length=20),
                              with_labels=True)
    assert len(feats) == 1 and len(feats.input_ids[0]) <= 64
    assert _span_text(ex, feats, 0) == "Sevilla"


def test_batch_pads_dynamically(bpe_tokenizer, squad_obj):
    ds = parse_squad(squad_obj, "tiny.json")
    feats = tokenize_examples(ds.examples[:4], bpe_tokenizer, with_labels=True)
    batch = feats.batch([0, 1, 2], labels=True)
    longest = max(len(feats.input_ids[i]) for i in range(3))
    assert batch["input_ids"].shape == (3, longest) and batch["input_ids"].dtype == np.int64
    assert (batch["input_ids"][batch["attention_mask"] == 0] == bpe_tokenizer.pad_token_id).all()
    assert "token_type_ids" not in batch  # RoBERTa takes none
    assert list(batch["start_positions"]) == feats.start_positions[:3]


def test_bert_features_carry_token_types(wordpiece_tokenizer, squad_obj):
    ds = parse_squad(squad_obj, "tiny.json")
    feats = tokenize_examples(ds.examples[:2], wordpiece_tokenizer)
    batch = feats.batch([0, 1])
    assert "token_type_ids" in batch and batch["token_type_ids"].max() == 1


def test_postprocess_picks_context_span_across_windows(tokenizer, squad_obj):
    ds = parse_squad(squad_obj, "tiny.json")
    ex = ds.examples[0]
    feats = tokenize_examples([ex], tokenizer, FeatureConfig(max_length=32, doc_stride=8), with_labels=True)
    starts = [np.zeros(len(x)) for x in feats.input_ids]
    ends = [np.zeros(len(x)) for x in feats.input_ids]
    # make a question token the global maximum: it must be ignored
    for s, e in zip(starts, ends, strict=True):
        s[1] = e[1] = 100.0
    gold_win = next(i for i, s in enumerate(feats.start_positions) if s)
    starts[gold_win][feats.start_positions[gold_win]] = 10.0
    ends[gold_win][feats.end_positions[gold_win]] = 10.0
    pred = postprocess([ex], feats, starts, ends)[ex.id]
    assert pred.text == ex.answers[0].text and ex.context[pred.start:pred.end] == pred.text


def test_postprocess_random_logits_stay_in_context(tokenizer, squad_obj):
    ds = parse_squad(squad_obj, "tiny.json")
    feats = tokenize_examples(ds.examples, tokenizer, FeatureConfig(max_length=32, doc_stride=8))
    rng = np.random.default_rng(0)
    starts = [rng.normal(size=len(x) + 5) for x in feats.input_ids]  # padded beyond the window
    ends = [rng.normal(size=len(x) + 5) for x in feats.input_ids]
    cfg = PostprocessConfig(n_best=5, max_answer_length=4)
    preds = postprocess(ds.examples, feats, starts, ends, cfg)
    assert set(preds) == {e.id for e in ds.examples}
    for k, ex in enumerate(ds.examples):
        p = preds[ex.id]
        assert 0 <= p.start <= p.end <= len(ex.context) and ex.context[p.start:p.end] == p.text and p.text
        # some window holds the span as at most max_answer_length whole context tokens
        spans = []
        for i in (i for i, e in enumerate(feats.example_index) if e == k):
            toks = [o for o in feats.offsets[i] if o is not None and o[0] < p.end and o[1] > p.start]
            if toks and toks[0][0] == p.start and toks[-1][1] == p.end:
                spans.append(len(toks))
        assert spans and min(spans) <= cfg.max_answer_length


def test_postprocess_v2_null_answer(bpe_tokenizer):
    ex = Example("q", "¿Quién?", "Nadie vive aquí.", (), is_impossible=True)
    feats = tokenize_examples([ex], bpe_tokenizer)
    s = np.zeros(len(feats.input_ids[0]))
    e = np.zeros(len(feats.input_ids[0]))
    s[0] = e[0] = 5.0
    assert postprocess([ex], feats, [s], [e], PostprocessConfig(version_2=True))["q"].text == ""
    assert postprocess([ex], feats, [s], [e], PostprocessConfig(version_2=True, null_score_diff_threshold=20.0))["q"].text
