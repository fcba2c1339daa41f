"""From start/end logits to answer text: n-best spans, best across windows, v2.0 null answers.

A span is allowed only when both ends are context tokens of the same window (offsets not None),
end >= start, and it is at most ``max_answer_length`` tokens long. Its score is
start_logit + end_logit; the best span over all windows of an example wins. For SQuAD v2.0 the
null score (CLS start + CLS end, the lowest over windows) is compared against the best span:
the prediction is the empty string when ``null - best > null_score_diff_threshold``.

The answer is always ``context[start_char:end_char]``: an exact substring with its offsets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kdtool.data.features import QAFeatures
from kdtool.data.squad import Example
from kdtool.fields import setting


@dataclass(frozen=True)
class PostprocessConfig:
    n_best: int = setting(20, type=(1, 1 << 16), help="Start and end candidates considered per window.")
    max_answer_length: int = setting(30, type="tokens", help="Longest answer in tokens.")
    version_2: bool = setting(False, recipe_only=True)  # SQuAD v2.0 data: the reader sets it from the file
    null_score_diff_threshold: float = setting(0.0, option="--null-threshold", type=(-1e6, 1e6),
                                               help="SQuAD v2.0: answer nothing when null - best span > this.")


@dataclass(frozen=True)
class Prediction:
    id: str
    text: str
    start: int  # character offsets in the context; -1 for a null answer
    end: int
    score: float  # start + end logit of the chosen span (null score for a null answer)
    null_score: float | None = None

    def to_dict(self) -> dict:
        """JSON-safe: a score that is not finite (no window had a context token) is ``None``."""
        score = self.score if np.isfinite(self.score) else None
        return {"id": self.id, "answer": self.text, "start": self.start, "end": self.end, "score": score}


def _best_span(start_logits: np.ndarray, end_logits: np.ndarray, offsets: list, cfg: PostprocessConfig):
    """The best valid (score, start_token, end_token) in one window, or None."""
    n = min(len(offsets), len(start_logits))
    ctx = np.fromiter((o is not None for o in offsets[:n]), dtype=bool, count=n)
    if not ctx.any():
        return None
    s = np.where(ctx, start_logits[:n], -np.inf)
    e = np.where(ctx, end_logits[:n], -np.inf)
    k = min(cfg.n_best, int(ctx.sum()))
    starts = np.argpartition(-s, k - 1)[:k]
    ends = np.argpartition(-e, k - 1)[:k]
    best = None
    for i in starts:
        for j in ends:
            if j < i or j - i + 1 > cfg.max_answer_length or not (ctx[i] and ctx[j]):
                continue
            score = float(s[i] + e[j])
            if best is None or score > best[0]:
                best = (score, int(i), int(j))
    return best


def postprocess(
    examples: Sequence[Example],
    features: QAFeatures,
    start_logits: Sequence[np.ndarray],
    end_logits: Sequence[np.ndarray],
    config: PostprocessConfig = PostprocessConfig(),
) -> dict[str, Prediction]:
    """Predictions for every example, keyed by question id.

    ``start_logits[i]`` / ``end_logits[i]`` belong to window ``i`` of ``features`` and may be
    padded beyond the window's length (the padding is ignored).
    """
    best: dict[int, tuple] = {}
    null: dict[int, float] = {}
    for i, ex_idx in enumerate(features.example_index):
        sl, el = np.asarray(start_logits[i], dtype=np.float64), np.asarray(end_logits[i], dtype=np.float64)
        null_score = float(sl[0] + el[0])
        null[ex_idx] = min(null.get(ex_idx, np.inf), null_score)
        span = _best_span(sl, el, features.offsets[i], config)
        if span is not None and (ex_idx not in best or span[0] > best[ex_idx][0]):
            best[ex_idx] = (span[0], i, span[1], span[2])
    out: dict[str, Prediction] = {}
    for ex_idx, ex in enumerate(examples):
        nul = null.get(ex_idx)
        if ex_idx not in best:
            out[ex.id] = Prediction(ex.id, "", -1, -1, float(nul) if nul is not None else float("-inf"), nul)
            continue
        score, feat, i, j = best[ex_idx]
        if config.version_2 and nul is not None and nul - score > config.null_score_diff_threshold:
            out[ex.id] = Prediction(ex.id, "", -1, -1, nul, nul)
            continue
        c0, c1 = features.offsets[feat][i][0], features.offsets[feat][j][1]
        out[ex.id] = Prediction(ex.id, ex.context[c0:c1], c0, c1, score, nul)
    return out
