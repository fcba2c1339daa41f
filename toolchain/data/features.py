"""From examples to model features and back: tokenization with overflowing windows.

Every model kdtool handles is an extractive QA encoder fed ``question [SEP] context``. A context
longer than the window is cut into overlapping windows (``doc_stride`` tokens of overlap, the
Hugging Face convention); only the context is ever truncated. Each feature keeps its token-to-
character offsets for context tokens (``None`` elsewhere), which is what lets post-processing
return exact substrings of the original context and never a span from the question or padding.

Works with any fast tokenizer (WordPiece, byte-level BPE, SentencePiece). Questions longer than
``max_query_length`` tokens are cut at a token boundary first, so a pathological question cannot
push the context out of the window.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from kdtool.data.squad import Example
from kdtool.errors import InputError
from kdtool.fields import setting

# The window, in tokens: SQuAD's and the seed paper's (and most QA encoders' 512 positions hold it). The one
# place it is written: every command's --max-length / --max-seq-length defaults to it, through fit_window.
MAX_LENGTH = 384
# The inputs a batch of windows may feed a model, in this order (a BiLSTM and a RoBERTa take the first two): the
# one spelling of the model input names, read by the engines, the trainer, QAT calibration and export
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
log = logging.getLogger("kdtool.data")


def fit_window(requested: int | None, limit: int | None, *, model, option: str = "--max-length",
               default: int = MAX_LENGTH) -> int:
    """The window length for ``model``, which accepts ``limit`` positions (None: no limit): the one rule of every command.

    Not given (``requested`` None): ``default``, or ``limit`` when the model accepts fewer, said in one line.
    Given: used as it is, or refused when the model accepts fewer, with the option that fixes it.
    """
    if requested is None:
        if limit and limit < default:
            log.warning(f"{model} accepts {limit} positions: windows of {limit} tokens instead of the default {default} "
                        f"({option} sets another length, up to {limit})")
            return int(limit)
        return default
    if limit and requested > limit:
        raise InputError(f"{option} {requested} exceeds the {limit} positions {model} accepts; give {option} {limit} "
                         f"or less, or leave {option} out to use {limit}")
    return requested


@dataclass(frozen=True)
class FeatureConfig:
    max_length: int | None = setting(None, type="tokens", help="Tokens per window (qa) or per pair (pair-classification).",
                                     default_help=f"{MAX_LENGTH}, or the model's positions when it accepts fewer")
    doc_stride: int = setting(128, type="stride", help="Overlap in tokens between windows of a long context.")
    max_query_length: int = setting(64, type="tokens", help="Longest question in tokens.")

    def __post_init__(self):
        if self.window < 32:
            raise InputError(f"max_length must be at least 32 tokens, got {self.window}")
        if not 0 <= self.doc_stride < self.window:
            raise InputError(f"doc_stride must be between 0 and max_length ({self.window}), got {self.doc_stride}")
        if self.max_query_length < 1:
            raise InputError(f"max_query_length must be at least 1 token, got {self.max_query_length}")

    @property
    def window(self) -> int:
        """Tokens per window: ``max_length``, or :data:`MAX_LENGTH` when it was not given."""
        return self.max_length or MAX_LENGTH

    @property
    def query_tokens(self) -> int:
        """Question tokens kept: at most half the window, so the context always has room."""
        return min(self.max_query_length, self.window // 2)

    def fit(self, limit: int | None, *, model) -> FeatureConfig:
        """These windows, with a length, for a model that accepts ``limit`` positions (:func:`fit_window`); a window
        clipped to the model keeps at most half of itself as the stride."""
        length = fit_window(self.max_length, limit, model=model)
        stride = self.doc_stride if length >= self.window else min(self.doc_stride, length // 2)
        return FeatureConfig(length, stride, self.max_query_length)


@dataclass
class QAFeatures:
    """Tokenized windows of a list of examples; index-aligned lists, unpadded."""

    input_ids: list[list[int]]
    attention_mask: list[list[int]]
    token_type_ids: list[list[int]] | None
    offsets: list[list[tuple[int, int] | None]]  # character span per token, None outside the context
    example_index: list[int]  # which example each window came from
    start_positions: list[int] = field(default_factory=list)  # training targets (CLS index when absent)
    end_positions: list[int] = field(default_factory=list)
    pad_token_id: int = 0

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self))

    def batch(self, indices: Sequence[int], *, length: int | None = None, labels: bool = False) -> dict[str, np.ndarray]:
        """Pad the windows at ``indices`` to ``length`` (default: the longest of them)."""
        out = pad_windows(self, indices, length)
        if labels:
            out["start_positions"] = np.asarray([self.start_positions[i] for i in indices], dtype=np.int64)
            out["end_positions"] = np.asarray([self.end_positions[i] for i in indices], dtype=np.int64)
        return out


def pad_windows(feats, indices: Sequence[int], length: int | None = None) -> dict[str, np.ndarray]:
    """Model inputs for the windows at ``indices`` of any feature set with ``input_ids``,
    ``attention_mask``, ``token_type_ids`` (or None) and ``pad_token_id``, right-padded to
    ``length`` (default: the longest of them) as int64 arrays."""
    length = length or max(len(feats.input_ids[i]) for i in indices)
    n = len(indices)
    ids = np.full((n, length), feats.pad_token_id, dtype=np.int64)
    mask = np.zeros((n, length), dtype=np.int64)
    types = np.zeros((n, length), dtype=np.int64) if feats.token_type_ids is not None else None
    for row, i in enumerate(indices):
        k = len(feats.input_ids[i])
        if k > length:
            raise ValueError(f"window {i} has {k} tokens, more than the batch length {length}")
        ids[row, :k] = feats.input_ids[i]
        mask[row, :k] = feats.attention_mask[i]
        if types is not None:
            types[row, :k] = feats.token_type_ids[i]
    out = {"input_ids": ids, "attention_mask": mask}
    if types is not None:
        out["token_type_ids"] = types
    return out


def _truncate_question(question: str, tokenizer, max_query_length: int) -> str:
    enc = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    if len(enc["input_ids"]) <= max_query_length:
        return question
    return question[: enc["offset_mapping"][max_query_length - 1][1]]


def tokenize_examples(
    examples: Sequence[Example],
    tokenizer,
    config: FeatureConfig = FeatureConfig(),
    *,
    with_labels: bool = False,
) -> QAFeatures:
    """Tokenize examples into overlapping windows; with labels, also the gold token span.

    For training, the first gold answer is the target; a window that does not contain it whole
    (and every unanswerable question) points at the CLS token (index 0).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise InputError(f"tokenizer {type(tokenizer).__name__} is not a fast tokenizer; kdtool needs offset mappings")
    if tokenizer.padding_side != "right":
        tokenizer.padding_side = "right"
    questions = [_truncate_question(e.question.lstrip(), tokenizer, config.query_tokens) for e in examples]
    contexts = [e.context for e in examples]
    enc = tokenizer(
        questions,
        contexts,
        truncation="only_second",
        max_length=config.window,
        stride=config.doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )
    use_types = "token_type_ids" in tokenizer.model_input_names and "token_type_ids" in enc
    feats = QAFeatures(
        input_ids=enc["input_ids"],
        attention_mask=enc["attention_mask"],
        token_type_ids=enc["token_type_ids"] if use_types else None,
        offsets=[],
        example_index=list(enc["overflow_to_sample_mapping"]),
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
    )
    for i, offsets in enumerate(enc["offset_mapping"]):
        seq_ids = enc.sequence_ids(i)
        feats.offsets.append([tuple(o) if s == 1 else None for o, s in zip(offsets, seq_ids, strict=True)])
    if with_labels:
        owner = feats.example_index
        for i, offsets in enumerate(feats.offsets):
            ex = examples[owner[i]]
            first = i == 0 or owner[i - 1] != owner[i]
            last = i == len(owner) - 1 or owner[i + 1] != owner[i]
            start, end = _label_span(ex, offsets, first=first, last=last)
            feats.start_positions.append(start)
            feats.end_positions.append(end)
    return feats


def _label_span(example: Example, offsets: list, *, first: bool = True, last: bool = True) -> tuple[int, int]:
    """The gold span's first and last context tokens in this window, or (0, 0) (CLS).

    A window cut before the answer ends (or after it starts) does not hold it. The first and last
    windows of a context are never cut on that side: characters the tokenizer drops (a BOM, a soft
    hyphen) at an answer's edge must not make the answer look cut off.
    """
    if example.is_impossible or not example.answers:
        return 0, 0
    answer = example.answers[0]
    ctx = [i for i, o in enumerate(offsets) if o is not None]
    if not ctx or (not first and offsets[ctx[0]][0] > answer.start) or (not last and offsets[ctx[-1]][1] < answer.end):
        return 0, 0
    start = next((i for i in ctx if offsets[i][1] > answer.start), None)
    end = next((i for i in reversed(ctx) if offsets[i][0] < answer.end), None)
    if start is None or end is None or end < start:  # the answer is only characters the tokenizer drops
        return 0, 0
    return start, end


def length_sorted_batches(features: QAFeatures, batch_size: int, *, sort: bool = True) -> Iterator[list[int]]:
    """Batches of window indices; sorted by length so dynamic padding wastes little."""
    order = np.argsort(features.lengths, kind="stable") if sort else np.arange(len(features))
    for k in range(0, len(order), batch_size):
        yield [int(i) for i in order[k : k + batch_size]]
