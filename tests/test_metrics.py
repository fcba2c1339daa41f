"""The SQuAD metric: hand-computed cases in English and Spanish, and properties."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdtool.data.squad import Answer, Example
from kdtool.metrics import exact_match, f1, normalize_answer, score_question, squad_evaluate


@pytest.mark.parametrize("text,lang,expected", [
    ("The Eiffel Tower.", "en", "eiffel tower"),
    ("  a   quick\tfox  ", "en", "quick fox"),
    ("¿Qué?", "en", "¿qué"),  # the official script strips only ASCII punctuation
    ("¿Qué?", "es", "qué"),
    ("¡El «Niño»,  de   Perú!", "es", "niño de perú"),  # accents kept, «» and ¡! gone, article dropped
    ("los Denver Broncos", "es", "denver broncos"),
    ("los Denver Broncos", "en", "los denver broncos"),
    ("Unos y unas, el—la", "es", "y ella"),  # em dash is punctuation: "el—la" becomes "ella"
    ("El año 1.900", "es", "año 1900"),
])
def test_normalize_hand_cases(text, lang, expected):
    assert normalize_answer(text, lang) == expected


def test_accents_are_kept_in_spanish():
    assert exact_match("Malaga", "Málaga", "es") == 0.0
    assert f1("Malaga", "Málaga", "es") == 0.0
    assert exact_match("«Málaga»", "Málaga", "es") == 1.0


def test_f1_hand_computed():
    # pred tokens gran puente de sevilla, gold puente de sevilla: P = 3/4, R = 1
    assert f1("el gran puente de Sevilla", "puente de Sevilla", "es") == pytest.approx(2 * 0.75 / 1.75)
    # English keeps "los": P = 2/3, R = 1 -> 0.8
    assert f1("los Denver Broncos", "Denver Broncos", "en") == pytest.approx(0.8)
    assert f1("los Denver Broncos", "Denver Broncos", "es") == 1.0
    # repeated tokens count with multiplicity
    assert f1("de de de", "de", "es") == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))


def test_evaluate_max_over_golds_and_missing_scores_zero():
    ex = [Example("a", "q", "ctx", (Answer("Sevilla", 0), Answer("la ciudad de Sevilla", 0))),
          Example("b", "q", "ctx", (Answer("1900", 0),))]
    res = squad_evaluate(ex, {"a": "ciudad de Sevilla"}, "es")
    # "a": EM 1 against gold 2 (article dropped); "b" missing -> 0
    assert res["exact_match"] == pytest.approx(50.0)
    assert res["f1"] == pytest.approx(50.0)
    assert res["missing"] == 1 and res["total"] == 2


def test_evaluate_v2_has_noans_breakdown():
    ex = [Example("a", "q", "ctx", (Answer("Sevilla", 0),)), Example("b", "q", "ctx", (), is_impossible=True)]
    res = squad_evaluate(ex, {"a": "Sevilla", "b": ""}, "es")
    assert res["HasAns_exact"] == 100.0 and res["NoAns_exact"] == 100.0 and res["NoAns_total"] == 1
    res = squad_evaluate(ex, {"a": "Sevilla", "b": "algo"}, "es")
    assert res["NoAns_f1"] == 0.0 and res["f1"] == 50.0


def test_unknown_language_is_one_line_error():
    from kdtool.errors import InputError

    with pytest.raises(InputError, match="unknown language"):
        normalize_answer("x", "xx")


text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=200, deadline=None)
@given(pred=text, gold=text, lang=st.sampled_from(["en", "es"]))
def test_em_le_f1_bounds(pred, gold, lang):
    em, f = score_question(pred, [gold], lang)
    assert 0.0 <= em <= f <= 1.0


@settings(max_examples=200, deadline=None)
@given(gold=text, lang=st.sampled_from(["en", "es"]))
def test_prediction_equal_to_gold_scores_full(gold, lang):
    ex = [Example("q", "?", "ctx", (Answer(gold, 0),))]
    res = squad_evaluate(ex, {"q": gold}, lang)
    assert res["exact_match"] == 100.0 and res["f1"] == 100.0


@settings(max_examples=100, deadline=None)
@given(pred=text, golds=st.lists(text, min_size=1, max_size=4), lang=st.sampled_from(["en", "es"]))
def test_gold_order_irrelevant(pred, golds, lang):
    assert score_question(pred, golds, lang) == score_question(pred, list(reversed(golds)), lang)
