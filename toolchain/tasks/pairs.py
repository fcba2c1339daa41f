"""Sentence-pair matching data: GLUE-style TSV / JSONL pairs with labels, features and the metric.

A file holds one pair per line (JSONL: an object; TSV: a header row, then tab-separated rows).
The two texts are read from the first column pair that the file has, in the order of
:data:`TEXT_COLUMNS` (QNLI ``question``/``sentence``, MRPC/STS ``sentence1``/``sentence2``, QQP
``question1``/``question2``, MNLI ``premise``/``hypothesis``, ``text_a``/``text_b``); the label from
``label``. Labels are integers ``0..K-1`` or the names in :data:`LABEL_NAMES` (QNLI's
``entailment`` is the positive class 1 here: the sentence holds the answer). A malformed line is an
:class:`~kdtool.errors.InputError` naming the file and the line.

Metric: accuracy, and F1 of the positive class (binary) or macro F1 (more classes), in percent.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from kdtool.atomic import atomic_write_text
from kdtool.data.features import fit_window, length_sorted_batches, pad_windows
from kdtool.errors import InputError, require_file
from kdtool.progress import Progress, counter

TEXT_COLUMNS = (("question", "sentence"), ("sentence1", "sentence2"), ("question1", "question2"),
                ("premise", "hypothesis"), ("text_a", "text_b"))
LABEL_NAMES = {"not_entailment": 0, "entailment": 1, "no": 0, "yes": 1, "false": 0, "true": 1,
               "not_equivalent": 0, "equivalent": 1, "not_duplicate": 0, "duplicate": 1}


@dataclass(frozen=True)
class PairExample:
    id: str
    text_a: str
    text_b: str
    label: int | None = None


@dataclass
class PairDataset:
    examples: list[PairExample]
    source: str
    columns: tuple[str, str]
    num_labels: int

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def report(self) -> dict:
        counts = np.bincount([e.label for e in self.examples if e.label is not None], minlength=self.num_labels)
        return {"source": self.source, "pairs": len(self.examples), "columns": list(self.columns),
                "label_counts": counts.tolist(), "questions_scored": len(self.examples)}


def _label(value, where: str) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value >= 0:
        return value
    text = str(value).strip().lower()
    if text.isdigit():
        return int(text)
    if text in LABEL_NAMES:
        return LABEL_NAMES[text]
    raise InputError(f"{where}: label {value!r} is neither an integer 0..K-1 nor one of {', '.join(sorted(LABEL_NAMES))}")


def _rows(path: Path):
    """(line number, dict) per record of a JSONL or TSV file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    if path.suffix.lower() in (".tsv", ".txt"):
        reader = csv.DictReader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE)
        for i, row in enumerate(reader, start=2):
            yield i, row
        return
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}:{i}: not a JSON object ({err.msg}); a pairs file is JSONL or TSV") from None
        except ValueError:  # int(): more than 4300 digits
            raise InputError(f"{path}:{i}: holds a number of more than 4300 digits, too long to read") from None
        if not isinstance(obj, dict):
            raise InputError(f"{path}:{i}: expected a JSON object per line")
        yield i, obj


def load_pairs(source, *, limit: int | None = None, require_labels: bool = True) -> PairDataset:
    """Load a pairs file (``.jsonl`` / ``.json`` lines, or ``.tsv`` with a header)."""
    path = require_file(source, "pairs file")
    examples, columns = [], None
    for i, row in _rows(path):
        if columns is None:
            columns = next((c for c in TEXT_COLUMNS if c[0] in row and c[1] in row), None)
            if columns is None:
                raise InputError(f"{path}:{i}: no text columns; expected one of "
                                 + ", ".join(f"{a}/{b}" for a, b in TEXT_COLUMNS))
        a, b = row.get(columns[0]), row.get(columns[1])
        if not isinstance(a, str) or not isinstance(b, str) or not a.strip() or not b.strip():
            raise InputError(f"{path}:{i}: {columns[0]} and {columns[1]} must be non-empty strings")
        raw = row.get("label")
        if raw is None or raw == "":
            if require_labels:
                raise InputError(f"{path}:{i}: no label")
            label = None
        else:
            label = _label(raw, f"{path}:{i}")
        examples.append(PairExample(str(row.get("id", row.get("idx", f"{path.stem}-{len(examples)}"))), a, b, label))
        if limit and len(examples) >= limit:
            break
    if not examples:
        raise InputError(f"{path}: no pairs")
    ids = [e.id for e in examples]
    if len(set(ids)) != len(ids):
        raise InputError(f"{path}: pair ids must be unique")
    labels = [e.label for e in examples if e.label is not None]
    return PairDataset(examples, str(path), columns, max(2, max(labels, default=1) + 1))


def write_pairs_jsonl(path: Path, rows: Sequence[dict]) -> None:
    atomic_write_text(Path(path), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


@dataclass
class PairFeatures:
    """Tokenized pairs (one window per pair, the longer text truncated first); index-aligned, unpadded."""

    input_ids: list[list[int]]
    attention_mask: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: list[int] = field(default_factory=list)
    pad_token_id: int = 0

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def example_index(self) -> list[int]:
        return list(range(len(self)))

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self))

    def batch(self, indices: Sequence[int], *, length: int | None = None, labels: bool = False) -> dict[str, np.ndarray]:
        out = pad_windows(self, indices, length)
        if labels:
            out["labels"] = np.asarray([self.labels[i] for i in indices], dtype=np.int64)
        return out


def tokenize_pairs(examples: Sequence[PairExample], tokenizer, max_length: int = 128, *,
                   with_labels: bool = False) -> PairFeatures:
    enc = tokenizer([e.text_a for e in examples], [e.text_b for e in examples], truncation="longest_first",
                    max_length=max_length, padding=False)
    use_types = "token_type_ids" in tokenizer.model_input_names and "token_type_ids" in enc
    feats = PairFeatures(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"] if use_types else None,
                         pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    if with_labels:
        if any(e.label is None for e in examples):
            raise InputError("training pairs need labels")
        feats.labels = [e.label for e in examples]
    return feats


@dataclass(frozen=True)
class PairPrediction:
    id: str
    label: int
    scores: tuple[float, ...]  # the model's logits

    @property
    def text(self) -> str:  # what agreement and prediction files compare
        return str(self.label)

    def to_dict(self) -> dict:
        return asdict(self)


def pair_metrics(examples: Sequence[PairExample], predictions: dict[str, PairPrediction | int], num_labels: int = 2) -> dict:
    """Accuracy and F1 in percent; a pair without a prediction counts as wrong."""
    gold = np.asarray([e.label for e in examples])
    pred = np.asarray([getattr(predictions.get(e.id), "label", predictions.get(e.id, -1)) for e in examples])
    k = max(num_labels, int(gold.max(initial=0)) + 1)

    def f1_of(c: int) -> float:
        tp = float(((pred == c) & (gold == c)).sum())
        fp, fn = float(((pred == c) & (gold != c)).sum()), float(((pred != c) & (gold == c)).sum())
        return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)

    f1 = f1_of(1) if k == 2 else float(np.mean([f1_of(c) for c in range(k)]))
    return {"accuracy": 100.0 * float((pred == gold).mean()) if len(gold) else 0.0, "f1": 100.0 * f1,
            "total": len(gold), "missing": int(sum(e.id not in predictions for e in examples)),
            "f1_kind": "positive class" if k == 2 else "macro"}


def predict_pairs(engine, examples: Sequence[PairExample], *, max_length: int | None = None, batch_size: int = 32,
                  progress: Progress | None = None, task: str = "predict") -> dict:
    """``{id: PairPrediction}`` of ``engine`` (a :class:`kdtool.engines.QAEngine` whose ``run`` gives ``(logits,)``)
    on pair examples (length-sorted batches, dynamic padding); pairs done are counted to ``progress`` as ``task``."""
    max_length = fit_window(max_length, engine.max_length, model=getattr(engine, "path", None) or engine.name)
    feats = tokenize_pairs(examples, engine.tokenizer, max_length)
    done = counter(progress, task, len(feats), "win")
    preds = {}
    for idx in length_sorted_batches(feats, batch_size):
        batch = feats.batch(idx)
        (logits,) = engine.run({k: batch[k] for k in engine.input_names if k in batch})
        for row, i in enumerate(idx):
            e = examples[i]
            preds[e.id] = PairPrediction(e.id, int(logits[row].argmax()), tuple(float(x) for x in logits[row]))
        done(len(idx))
    return preds
