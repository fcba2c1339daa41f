"""Answering a list of examples with any engine: features, batched runs, post-processing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kdtool.data import (
    FeatureConfig,
    PostprocessConfig,
    Prediction,
    QAFeatures,
    length_sorted_batches,
    postprocess,
    tokenize_examples,
)
from kdtool.data.squad import Example
from kdtool.engines import QAEngine
from kdtool.fields import setting
from kdtool.progress import Progress, counter
from kdtool.questions import answer_row


@dataclass(frozen=True)
class PredictConfig:
    features: FeatureConfig = setting(factory=FeatureConfig)
    postprocess: PostprocessConfig = setting(factory=PostprocessConfig)
    batch_size: int = setting(16, type=(1, 1 << 16), help="Windows per forward pass.")


def feature_config_for(engine: QAEngine, config: FeatureConfig) -> FeatureConfig:
    """``config`` with the window length ``engine`` answers with (:func:`kdtool.data.fit_window`: the default
    clipped to the engine's positions, said in one line; a length given that the engine cannot take refused)."""
    return config.fit(engine.max_length, model=getattr(engine, "path", None) or getattr(engine, "name", None) or "the model")


def run_features(engine: QAEngine, features: QAFeatures, batch_size: int, *, progress: Progress | None = None,
                 task: str = "predict") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Start/end logits for every window, batched by length with dynamic padding; the windows done are
    counted to ``progress`` as ``task`` (unit "win") after each batch."""
    starts: list = [None] * len(features)
    ends: list = [None] * len(features)
    done = counter(progress, task, len(features), "win")
    for idx in length_sorted_batches(features, batch_size):
        batch = features.batch(idx)
        s, e = engine.run({k: batch[k] for k in engine.input_names if k in batch})
        for row, i in enumerate(idx):
            n = len(features.input_ids[i])
            starts[i], ends[i] = s[row, :n], e[row, :n]
        done(len(idx))
    return starts, ends


def features_for(engine: QAEngine, examples: Sequence[Example], config: PredictConfig = PredictConfig()) -> QAFeatures:
    """The windows ``engine`` answers ``examples`` from (each example tokenized on its own, so the
    windows of a question do not depend on which other questions share its call)."""
    return tokenize_examples(examples, engine.tokenizer, feature_config_for(engine, config.features))


def predict(engine: QAEngine, examples: Sequence[Example], config: PredictConfig = PredictConfig(), *,
            progress: Progress | None = None, task: str = "predict") -> dict[str, Prediction]:
    """Predictions of ``engine`` for ``examples`` keyed by question id (windows counted as in :func:`run_features`)."""
    features = features_for(engine, examples, config)
    starts, ends = run_features(engine, features, config.batch_size, progress=progress, task=task)
    return postprocess(examples, features, starts, ends, config.postprocess)


def answer_questions(engine: QAEngine, questions: Sequence[tuple[Example, str]],
                     config: PredictConfig = PredictConfig()) -> list[dict]:
    """JSON answers (:func:`kdtool.questions.answer_row`) for ``(example, user id)`` pairs, in order."""

    preds = predict(engine, [ex for ex, _ in questions], config)
    return [answer_row(preds[ex.id], uid) for ex, uid in questions]
