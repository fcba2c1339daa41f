"""SQuAD JSON (v1.1 and v2.0) loading with validation and repair of answer offsets.

Real data is messy (the SQuAD-es translation has empty answers and contexts that begin with a
byte-order mark that the offsets count), so loading is also checking: every answer must point
at its text in the context. A small shift is repaired and counted; an empty answer is dropped
and counted; a v1.1 question left with no answer is dropped. A malformed record is an
:class:`~kdtool.errors.InputError` naming the file and the JSON path of the record.
"""

from __future__ import annotations

import functools
import json
import random
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kdtool.errors import InputError, check_text, json_error, require_file

MAX_OFFSET_SHIFT = 8  # characters an answer_start may be off by and still be repaired


@dataclass(frozen=True)
class Answer:
    text: str
    start: int  # character offset in the context

    @property
    def end(self) -> int:
        return self.start + len(self.text)


@dataclass(frozen=True)
class Example:
    id: str
    question: str
    context: str
    answers: tuple[Answer, ...]
    title: str = ""
    is_impossible: bool = False
    plausible_answers: tuple[Answer, ...] = ()


@dataclass
class LoadReport:
    """What loading kept, dropped and repaired; printed by the CLI and saved in reports."""

    source: str
    version: str
    articles: int = 0
    paragraphs: int = 0
    questions_in_file: int = 0
    questions_kept: int = 0
    questions_dropped_no_answer: int = 0
    questions_dropped_empty: int = 0  # an empty (blank) context or question: nothing to answer
    unanswerable: int = 0
    answers_kept: int = 0
    answers_dropped_empty: int = 0
    answers_dropped_bad_offset: int = 0
    offsets_repaired: int = 0

    def summary(self) -> str:
        parts = [f"{self.questions_kept} questions kept"]
        if self.unanswerable:
            parts.append(f"{self.unanswerable} unanswerable")
        for name, label in (
            ("answers_dropped_empty", "empty answers dropped"),
            ("answers_dropped_bad_offset", "answers with unrepairable offsets dropped"),
            ("offsets_repaired", "offsets repaired"),
            ("questions_dropped_no_answer", "questions left without an answer dropped"),
            ("questions_dropped_empty", "questions with an empty context or question dropped"),
        ):
            if getattr(self, name):
                parts.append(f"{getattr(self, name)} {label}")
        return f"{self.source} (SQuAD {self.version}): " + ", ".join(parts)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SquadDataset:
    examples: list[Example]
    version: str  # "1.1" or "2.0"
    report: LoadReport
    source: str = ""
    # examples grouped by article title, in file order (kept for splitting without re-reading)
    articles: list[str] = field(default_factory=list)

    @property
    def is_v2(self) -> bool:
        return self.version.startswith("2")

    def __len__(self) -> int:
        return len(self.examples)

    def subset(self, examples: list[Example], source: str) -> SquadDataset:
        report = LoadReport(source=source, version=self.version, questions_kept=len(examples))
        report.unanswerable = sum(e.is_impossible for e in examples)
        report.answers_kept = sum(len(e.answers) for e in examples)
        return SquadDataset(examples, self.version, report, source, sorted({e.title for e in examples}))


def _starts_segment(ch: str) -> bool:
    """Whether a character begins a new canonical segment: its decomposition starts with a starter (class 0)."""
    return unicodedata.combining(unicodedata.normalize("NFD", ch)[:1]) == 0


def _normalized_span(context: str, text: str, start: int) -> str | None:
    """The span of ``context`` at ``start`` canonically equal to ``text`` (equal once both are NFC, or NFD), or None.

    An answer typed in NFD (``e`` + combining accent) against an NFC context (``é``) has the right
    offset but a different length; the span kept is the context's own characters. Linear in the
    answer: the context is decomposed one segment (a starter and its combining marks) at a time and
    compared as it goes, since NFD of a string is the NFD of its segments put together.
    """
    want = unicodedata.normalize("NFD", text)
    pos, end = 0, start
    while end < len(context) and pos < len(want):
        seg_end = end + 1
        while seg_end < len(context) and not _starts_segment(context[seg_end]):
            seg_end += 1
        piece = unicodedata.normalize("NFD", context[end:seg_end])
        if want[pos:pos + len(piece)] != piece:
            return None
        pos, end = pos + len(piece), seg_end
    return context[start:end] if pos == len(want) and end > start else None


@functools.lru_cache(maxsize=4)
def _is_nfc(text: str) -> bool:
    """Cached per context: many answers share one (long) context, and checking it is linear in its length."""
    return unicodedata.is_normalized("NFC", text)


def _locate(context: str, text: str, start: int) -> tuple[int, str] | None:
    """(offset, span text) of the answer: exact, shifted within MAX_OFFSET_SHIFT, or equal after NFC normalization."""
    fixed = _repair_start(context, text, start)
    if fixed is not None:
        return fixed, text
    if unicodedata.is_normalized("NFC", text) and _is_nfc(context):
        return None  # both already normalized: normalization cannot explain the mismatch
    for shift in range(0, MAX_OFFSET_SHIFT + 1):
        for cand in {start - shift, start + shift}:
            if 0 <= cand < len(context):
                span = _normalized_span(context, text, cand)
                if span is not None:
                    return cand, span
    return None


def _repair_start(context: str, text: str, start: int) -> int | None:
    """The offset of ``text`` nearest to ``start`` within MAX_OFFSET_SHIFT, or None."""
    if 0 <= start and context[start : start + len(text)] == text:
        return start
    best = None
    for shift in range(1, MAX_OFFSET_SHIFT + 1):
        for cand in (start - shift, start + shift):
            if 0 <= cand and context[cand : cand + len(text)] == text:
                best = cand
                break
        if best is not None:
            return best
    return None


def _expect(cond: bool, path: Path, where: str, what: str) -> None:
    if not cond:
        raise InputError(f"{path}: not a SQuAD file: {where} {what}; expected the SQuAD v1.1/v2.0 layout")


def _answers(raw, context: str, path: Path, where: str, report: LoadReport, count: bool, strict: bool) -> list[Answer]:
    _expect(isinstance(raw, list), path, where, "is not a list")
    kept = []
    for k, ans in enumerate(raw):
        w = f"{where}[{k}]"
        _expect(isinstance(ans, dict) and "text" in ans and "answer_start" in ans, path, w, "lacks text/answer_start")
        text, start = ans["text"], ans["answer_start"]
        _expect(isinstance(text, str) and isinstance(start, int) and not isinstance(start, bool), path, w,
                "has a non-string text or a non-integer answer_start")
        _text(text, path, w, "text")
        if not text.strip():
            if count:
                report.answers_dropped_empty += 1
            continue
        located = _locate(context, text, start)
        if located is None:
            if strict and count:
                raise InputError(f"{path}: {w}: answer_start {start} does not point at {text[:40]!r} in the context "
                                 f"(not even within {MAX_OFFSET_SHIFT} characters, compared after Unicode NFC "
                                 "normalization); fix the offset")
            if count:
                report.answers_dropped_bad_offset += 1
            continue
        fixed, text = located
        if fixed != start and count:
            report.offsets_repaired += 1
        kept.append(Answer(text, fixed))
    return kept


_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u([dD][0-9a-fA-F]{3})")


def _surrogate_line(path: Path) -> int | None:
    """The line of the first ``\\uD800``-``\\uDFFF`` escape in ``path`` that is not half of a valid pair."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None
    matches = list(_ESCAPE.finditer(text))
    k = 0
    while k < len(matches):
        high = int(matches[k].group(1), 16) < 0xDC00
        nxt = matches[k + 1] if k + 1 < len(matches) else None
        if high and nxt is not None and nxt.start() == matches[k].end() and int(nxt.group(1), 16) >= 0xDC00:
            k += 2
            continue
        return text.count("\n", 0, matches[k].start()) + 1
    return None


def _text(value: str, path: Path, where: str, field: str) -> str:
    """``value`` if it is Unicode text; else one line naming the file, the line and the field."""
    try:
        return check_text(value, where, field)
    except InputError as err:
        line = _surrogate_line(path) if path.is_file() else None
        raise InputError(f"{path}:{line}: {err}" if line else f"{path}: {err}") from None


def _question(qa, qw: str, context: str, title: str, path: Path, report: LoadReport, strict: bool) -> Example | None:
    """One checked question of a paragraph (None when it is dropped and counted)."""
    _expect(isinstance(qa, dict) and isinstance(qa.get("question"), str) and "id" in qa, path, qw,
            "lacks a string 'question' or an 'id'")
    _expect(isinstance(qa["id"], str) or (isinstance(qa["id"], int) and not isinstance(qa["id"], bool)),
            path, qw + ".id", f"is {type(qa['id']).__name__}, not a string")
    _expect(isinstance(qa.get("is_impossible", False), bool), path, qw + ".is_impossible",
            f"is {qa.get('is_impossible')!r:.20}, not true or false (a JSON boolean, unquoted)")
    _text(qa["question"], path, qw, "question")
    if isinstance(qa["id"], str):
        _text(qa["id"], path, qw, "id")
    report.questions_in_file += 1
    impossible = qa.get("is_impossible", False)
    if not context.strip() or not qa["question"].strip():
        report.questions_dropped_empty += 1  # nothing to answer from, or nothing asked
        return None
    answers = _answers(qa.get("answers", []), context, path, qw + ".answers", report, True, strict)
    plausible = _answers(qa.get("plausible_answers", []), context, path, qw + ".plausible_answers", report,
                         False, False)
    if impossible:
        report.unanswerable += 1
        answers = []
    elif not answers:
        report.questions_dropped_no_answer += 1
        return None
    report.answers_kept += len(answers)
    return Example(str(qa["id"]), qa["question"], context, tuple(answers), title, impossible, tuple(plausible))


def parse_squad(obj, source: str | Path, *, version: str | None = None, strict: bool = True) -> SquadDataset:
    """Validate a parsed SQuAD JSON object and turn it into a :class:`SquadDataset`.

    ``strict``: an answer whose offset cannot be repaired is an error (the default); otherwise it
    is dropped and counted in the report. Every check is linear in the size of the file.
    """
    path = Path(source)
    _expect(isinstance(obj, dict) and isinstance(obj.get("data"), list), path, "the top level", "has no 'data' list")
    declared = str(obj.get("version", "")).lstrip("v")
    report = LoadReport(source=str(source), version="")
    examples: list[Example] = []
    titles: list[str] = []
    seen: set[str] = set()
    saw_impossible = False
    for i, article in enumerate(obj["data"]):
        where = f"data[{i}]"
        _expect(isinstance(article, dict) and isinstance(article.get("paragraphs"), list), path, where,
                "has no 'paragraphs' list")
        title = _text(str(article.get("title", "")), path, where, "title")
        titles.append(title)
        report.articles += 1
        for j, para in enumerate(article["paragraphs"]):
            pw = f"{where}.paragraphs[{j}]"
            _expect(isinstance(para, dict) and isinstance(para.get("context"), str), path, pw, "has no string 'context'")
            _expect(isinstance(para.get("qas"), list), path, pw, "has no 'qas' list")
            context = _text(para["context"], path, pw, "context")
            report.paragraphs += 1
            for q, qa in enumerate(para["qas"]):
                example = _question(qa, f"{pw}.qas[{q}]", context, title, path, report, strict)
                saw_impossible |= "is_impossible" in qa
                if example is None:
                    continue
                if example.id in seen:
                    raise InputError(f"{source}: question id {example.id[:80]!r} appears more than once; ids must be unique")
                seen.add(example.id)
                examples.append(example)
    report.questions_kept = len(examples)
    report.version = version or ("2.0" if saw_impossible or declared.startswith("2") else "1.1")
    if not examples:
        why = f": {report.summary().split(': ', 1)[1]}" if report.questions_in_file else ""
        raise InputError(f"{source}: no usable question (all {report.questions_in_file} were dropped{why}); "
                         "check the file")
    return SquadDataset(examples, report.version, report, str(source), titles)


def load_squad(source: str | Path, *, split: str = "validation", strict: bool = True) -> SquadDataset:
    """Load a SQuAD file (a local JSON path), or a Hugging Face dataset name where reachable."""
    path = Path(source)
    if path.exists() or path.suffix == ".json" or "/" not in str(source) or str(source).startswith((".", "/")):
        path = require_file(path, "SQuAD file")
        try:
            with path.open("r", encoding="utf-8-sig") as fh:
                obj = json.load(fh)
        except UnicodeDecodeError:
            raise InputError(f"{path}: not UTF-8 text; a SQuAD file is UTF-8 JSON") from None
        except ValueError as err:  # JSONDecodeError, or an integer of more than 4300 digits
            raise json_error(path, err) from None
        except RecursionError:
            raise InputError(f"{path}: JSON nested too deeply to be a SQuAD file; check the file") from None
        return parse_squad(obj, path, strict=strict)
    return _load_hub(str(source), split)


def _load_hub(name: str, split: str) -> SquadDataset:
    try:
        import datasets  # optional: pip install 'kdtool[hub]'
    except ImportError:
        raise InputError(f"{name}: no such file, and the 'datasets' package is not installed to fetch it "
                         "from the hub; give a local SQuAD JSON file") from None
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as err:  # network, unknown name: one line either way
        raise InputError(f"{name}: no such file, and the hub dataset could not be loaded ({type(err).__name__}); "
                         "give a local SQuAD JSON file") from None
    paragraphs: dict[tuple[str, str], list] = {}
    for row in ds:
        ans = row["answers"]
        qa = {"id": row["id"], "question": row["question"],
              "answers": [{"text": t, "answer_start": s} for t, s in zip(ans["text"], ans["answer_start"], strict=False)]}
        if not qa["answers"]:
            qa["is_impossible"] = True
        paragraphs.setdefault((row.get("title", ""), row["context"]), []).append(qa)
    data = [{"title": t, "paragraphs": [{"context": c, "qas": q}]} for (t, c), q in paragraphs.items()]
    return parse_squad({"data": data}, name)


def split_by_article(ds: SquadDataset, dev_fraction: float = 0.2, seed: int = 0) -> tuple[SquadDataset, SquadDataset]:
    """Split deterministically by article title, so no context is shared between the parts."""
    if not 0.0 < dev_fraction < 1.0:
        raise InputError(f"dev fraction must be between 0 and 1, got {dev_fraction}")
    titles = sorted({e.title for e in ds.examples})
    if len(titles) < 2:
        raise InputError(f"{ds.source}: only one article; cannot split by article")
    random.Random(seed).shuffle(titles)
    n_dev = max(1, round(len(titles) * dev_fraction))
    dev_titles = set(titles[:n_dev])
    train = [e for e in ds.examples if e.title not in dev_titles]
    dev = [e for e in ds.examples if e.title in dev_titles]
    return ds.subset(train, f"{ds.source}[train]"), ds.subset(dev, f"{ds.source}[dev]")


def to_squad_json(ds: SquadDataset | list[Example], version: str | None = None) -> dict:
    """The SQuAD JSON object for a dataset or a list of examples (round-trips with parse_squad)."""
    examples = ds.examples if isinstance(ds, SquadDataset) else ds
    version = version or (ds.version if isinstance(ds, SquadDataset) else "1.1")
    articles: dict[str, dict[str, list]] = {}
    for e in examples:
        qa = {"id": e.id, "question": e.question, "answers": [{"text": a.text, "answer_start": a.start} for a in e.answers]}
        if version.startswith("2"):
            qa["is_impossible"] = e.is_impossible
            if e.plausible_answers:
                qa["plausible_answers"] = [{"text": a.text, "answer_start": a.start} for a in e.plausible_answers]
        articles.setdefault(e.title, {}).setdefault(e.context, []).append(qa)
    data = [{"title": t, "paragraphs": [{"context": c, "qas": q} for c, q in paras.items()]} for t, paras in articles.items()]
    return {"version": version if version.startswith("v") or version == "1.1" else f"v{version}", "data": data}
