"""The QA task's code for the trainer: SQuAD examples, windowed features, span loss, F1/EM."""

from __future__ import annotations

from kdtool.data import FeatureConfig, load_squad, tokenize_examples
from kdtool.engines.pytorch import ModelEngine
from kdtool.metrics import squad_evaluate
from kdtool.predict import PredictConfig, predict

LABEL_KEYS = ("start_positions", "end_positions")


def feature_config(max_length: int | None, doc_stride: int, max_query_length: int = 64):
    """Windows of ``max_length`` tokens (None: the default, fitted to the model later) overlapping by ``doc_stride``
    (checked: stride < length)."""

    return FeatureConfig(max_length, doc_stride, max_query_length)


def load_examples(path: str | None, limit: int | None = None) -> list:
    if path is None:
        return []
    examples = load_squad(path).examples
    return examples[:limit] if limit else examples


def make_features(examples, tokenizer, config, *, with_labels: bool = False):
    return tokenize_examples(examples, tokenizer, config, with_labels=with_labels)


def soft_mask(batch: dict):
    """Which logit entries the soft losses compare: every real token."""
    return batch["attention_mask"]


def hard_loss(outputs: tuple, batch: dict):
    from kdtool.losses import span_loss  # torch: validating an ONNX bundle does not load it

    start, end = outputs
    return span_loss(start, end, batch["start_positions"], batch["end_positions"], batch["attention_mask"])


def evaluate(model, tokenizer, examples, features_config, *, batch_size: int, lang: str, device) -> dict:
    """SQuAD F1/EM of the in-memory ``model`` on ``examples`` (the project's predict + metric path)."""

    was_training = model.training
    model.eval()
    try:
        engine = ModelEngine(model, tokenizer, device=device)
        preds = predict(engine, examples, PredictConfig(features=features_config, batch_size=batch_size))
    finally:
        model.train(was_training)
    return squad_evaluate(examples, {k: p.text for k, p in preds.items()}, lang)
