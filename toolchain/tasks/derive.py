"""A QNLI-style sentence-pair matching set derived from a SQuAD file.

Each context is split into sentences; each question is paired with sentences of its own context,
and the label says whether that sentence holds a gold answer (1) or not (0), as GLUE's QNLI does
with SQuAD. Two rules keep the labels right:

- **No split inside an answer.** A sentence boundary that falls strictly inside any gold answer span
  of any question on the paragraph is removed (the two sentences are merged), so every answer lies
  whole in exactly one sentence and a positive really contains its answer.
- **Splits.** A boundary is a ``.``, ``!``, ``?`` or ``…`` (with closing quotes/brackets) followed by
  whitespace and then an upper-case letter, a digit, an opening quote or ``¿``/``¡``; a period after a
  known abbreviation (``Sr.``, ``EE.``, ``a.``, single letters) is no boundary.

Every question gives one positive per answer-holding sentence and up to ``negatives`` negatives: the
other sentences with the most words in common with the question (hard negatives, as QNLI filtered
for lexical overlap), ties broken by position. ``negatives=None`` keeps every sentence.
Split the SQuAD file by article first (``kdtool split``) and derive train and dev separately, so no
context is shared between them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kdtool.data.squad import Example

BOUNDARY = re.compile(r"[.!?…]+[\"'»”)\]]*(?=\s+[\"'«“¿¡(]?[A-ZÁÉÍÓÚÑÜ0-9])")
ABBREVIATIONS = {"sr", "sra", "srta", "dr", "dra", "st", "sto", "sta", "ee", "uu", "etc", "p", "ej", "núm", "no",
                 "vol", "cap", "av", "gral", "prof", "ing", "lic", "mr", "mrs", "ms", "jr", "vs", "aprox", "c", "d",
                 "a", "fig", "ed", "eds", "op", "cit", "inc", "co", "ltd", "s", "jn", "mt", "ft"}
WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Sentence:
    start: int
    end: int  # exclusive, trailing whitespace excluded

    def holds(self, start: int, end: int) -> bool:
        return self.start <= start and end <= self.end


def _is_abbreviation(text: str, dot: int) -> bool:
    m = re.search(r"(\w+)\.$", text[max(0, dot - 12):dot + 1])
    return bool(m) and (m.group(1).lower() in ABBREVIATIONS or len(m.group(1)) == 1)


def split_sentences(context: str, protected: list[tuple[int, int]] = ()) -> list[Sentence]:
    """Sentences of ``context`` as character spans; no boundary falls strictly inside a ``protected`` span."""
    cuts = []
    for m in BOUNDARY.finditer(context):
        end = m.end()
        if context[m.start()] == "." and m.end() - m.start() == 1 and _is_abbreviation(context, m.start()):
            continue
        if any(s < end < e for s, e in protected):
            continue
        cuts.append(end)
    spans, start = [], 0
    for cut in cuts + [len(context)]:
        while start < cut and context[start].isspace():
            start += 1
        end = cut
        while end > start and context[end - 1].isspace():
            end -= 1
        if end > start:
            spans.append(Sentence(start, end))
        start = cut
    return spans


def _words(text: str) -> set[str]:
    return {w.lower() for w in WORD.findall(text) if len(w) > 2}


def derive_pairs(examples: list[Example], *, negatives: int | None = 1) -> tuple[list[dict], dict]:
    """QNLI-style rows ``{id, question, sentence, label, squad_id}`` and a report of what was made."""
    by_context: dict[str, list[Example]] = {}
    for e in examples:
        by_context.setdefault(e.context, []).append(e)
    rows, report = [], {"questions": 0, "contexts": len(by_context), "sentences": 0, "positives": 0, "negatives": 0,
                        "questions_without_negative": 0, "merged_boundaries": 0}
    for context, group in by_context.items():
        protected = [(a.start, a.end) for e in group for a in e.answers]
        sentences = split_sentences(context, protected)
        report["sentences"] += len(sentences)
        report["merged_boundaries"] += len(split_sentences(context)) - len(sentences)
        for e in group:
            if not e.answers:
                continue  # SQuAD 2.0 unanswerable: every sentence would be a negative without a positive
            report["questions"] += 1
            pos = [i for i, s in enumerate(sentences) if any(s.holds(a.start, a.end) for a in e.answers)]
            q_words = _words(e.question)
            others = [i for i in range(len(sentences)) if i not in pos]
            others.sort(key=lambda i: (-len(q_words & _words(context[sentences[i].start:sentences[i].end])), i))
            neg = others if negatives is None else others[:negatives]
            report["questions_without_negative"] += not neg
            for i, label in [(i, 1) for i in pos] + [(i, 0) for i in sorted(neg)]:
                s = sentences[i]
                rows.append({"id": f"{e.id}-s{i}", "question": e.question, "sentence": context[s.start:s.end],
                             "label": label, "squad_id": e.id})
                report["positives" if label else "negatives"] += 1
    report["pairs"] = len(rows)
    return rows, report
