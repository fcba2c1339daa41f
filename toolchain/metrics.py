"""SQuAD F1 / EM with the official v1.1 semantics and the MLQA rules for other languages.

Normalisation (``normalize_answer``):

* English (SQuAD v1.1 official script): lowercase; remove ASCII punctuation; remove the
  articles a/an/the; collapse whitespace.
* Spanish (MLQA rules): lowercase; remove every Unicode punctuation character (category P*)
  and ASCII punctuation; remove el/la/los/las/un/una/unos/unas; collapse whitespace. Accents
  are kept.

Languages are data (:data:`LANGUAGES`), not branches. EM and F1 are percentages; each question
takes the maximum over its gold answers; a question with no prediction scores 0. For SQuAD v2.0
an unanswerable question's gold is the empty string, and the result adds HasAns / NoAns parts.
"""

from __future__ import annotations

import collections
import string
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kdtool.errors import InputError
from kdtool.fields import setting

ASCII_PUNCT = frozenset(string.punctuation)


def is_ascii_punct(ch: str) -> bool:
    return ch in ASCII_PUNCT


def is_unicode_punct(ch: str) -> bool:
    """Every Unicode punctuation character (category P*) and ASCII punctuation (which includes symbols like $)."""
    return ch in ASCII_PUNCT or unicodedata.category(ch).startswith("P")


@dataclass(frozen=True)
class Language:
    code: str
    articles: frozenset[str]
    is_punct: Callable[[str], bool]


LANGUAGES: dict[str, Language] = {
    "en": Language("en", frozenset({"a", "an", "the"}), is_ascii_punct),
    "es": Language("es", frozenset({"el", "la", "los", "las", "un", "una", "unos", "unas"}), is_unicode_punct),
}


# The one default of every --lang (score, validate, finetune, distill, prune, a recipe's data.lang): Spanish, the
# product's own language (SQuAD-es teacher, the shared data, the recipes). Training and validation used to
# differ (es and en), so a student's dev F1 in its training report and in kdtool validate disagreed by default;
# es rather than en because a training run's fingerprint holds its language, and runs under way keep resuming.
DEFAULT_LANG = "es"


def lang_setting(**more) -> Any:
    """The ``--lang`` field of every config that scores answers."""
    return setting(DEFAULT_LANG, choices=tuple(sorted(LANGUAGES)),
                   help="Answer normalisation of the F1/EM metric (es: MLQA rules, en: SQuAD).", **more)


def get_language(lang: str) -> Language:
    try:
        return LANGUAGES[lang]
    except KeyError:
        raise InputError(f"unknown language {lang!r} for the metric; known: {', '.join(sorted(LANGUAGES))}") from None


def normalize_answer(text: str, lang: str = DEFAULT_LANG) -> str:
    rules = get_language(lang)
    text = text.lower()
    text = "".join(ch for ch in text if not rules.is_punct(ch))
    return " ".join(tok for tok in text.split() if tok not in rules.articles)


def exact_match(prediction: str, gold: str, lang: str = DEFAULT_LANG) -> float:
    return float(normalize_answer(prediction, lang) == normalize_answer(gold, lang))


def f1(prediction: str, gold: str, lang: str = DEFAULT_LANG) -> float:
    pred_tokens = normalize_answer(prediction, lang).split()
    gold_tokens = normalize_answer(gold, lang).split()
    if not pred_tokens or not gold_tokens:  # v2.0: both empty is a match, one empty is not
        return float(pred_tokens == gold_tokens)
    common = collections.Counter(pred_tokens) & collections.Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def score_question(prediction: str, golds: Sequence[str], lang: str = DEFAULT_LANG) -> tuple[float, float]:
    """(EM, F1) in [0, 1] for one question: the best over its gold answers."""
    golds = list(golds) or [""]
    return (max(exact_match(prediction, g, lang) for g in golds), max(f1(prediction, g, lang) for g in golds))


def squad_evaluate(examples, predictions: Mapping[str, str], lang: str = DEFAULT_LANG) -> dict:
    """Official-style result dict for ``examples`` (kdtool Examples) and ``{id: answer_text}``.

    Keys: ``exact_match``, ``f1`` (percentages), ``total``, ``missing`` (questions without a
    prediction, scored 0), and for v2.0 data ``HasAns_*`` / ``NoAns_*``.
    """
    get_language(lang)
    em_sum = f1_sum = 0.0
    parts = {"HasAns": [0.0, 0.0, 0], "NoAns": [0.0, 0.0, 0]}
    missing = 0
    for ex in examples:
        golds = [a.text for a in ex.answers] if not ex.is_impossible else [""]
        if ex.id in predictions:
            em, f = score_question(predictions[ex.id], golds, lang)
        else:
            em = f = 0.0
            missing += 1
        em_sum += em
        f1_sum += f
        part = parts["NoAns" if ex.is_impossible else "HasAns"]
        part[0] += em
        part[1] += f
        part[2] += 1
    total = len(examples)
    result = {"exact_match": 100.0 * em_sum / total if total else 0.0, "f1": 100.0 * f1_sum / total if total else 0.0,
              "total": total, "missing": missing}
    if parts["NoAns"][2]:
        for name, (em, f, n) in parts.items():
            if n:
                result[f"{name}_exact"] = 100.0 * em / n
                result[f"{name}_f1"] = 100.0 * f / n
                result[f"{name}_total"] = n
    return result
