"""The pair-classification task's code for the trainer: pairs, one window per pair, cross-entropy, accuracy/F1."""

from __future__ import annotations

from kdtool.data import MAX_LENGTH, FeatureConfig
from kdtool.engines.pytorch import ModelEngine
from kdtool.models.heads import HEADS
from kdtool.tasks.pairs import load_pairs, pair_metrics, predict_pairs, tokenize_pairs

LABEL_KEYS = ("labels",)


def feature_config(max_length: int | None, doc_stride: int = 0, max_query_length: int = 64):
    """One window of ``max_length`` tokens per pair (None: the default, fitted to the model later): the stride
    and question limit do not apply."""

    return FeatureConfig(max_length, 0, max(1, min(max_query_length, (max_length or MAX_LENGTH) // 2)))


def load_examples(path: str | None, limit: int | None = None) -> list:
    return [] if path is None else load_pairs(path, limit=limit).examples


def make_features(examples, tokenizer, config, *, with_labels: bool = False):
    """``config`` is the run's FeatureConfig: pairs use its ``max_length`` (no windows, no stride)."""

    return tokenize_pairs(examples, tokenizer, config.window, with_labels=with_labels)


def soft_mask(batch: dict):
    """Classifier logits have no padding: every entry counts."""
    return None


def hard_loss(outputs: tuple, batch: dict):
    import torch.nn.functional as F

    (logits,) = outputs
    return F.cross_entropy(logits.float(), batch["labels"])


def evaluate(model, tokenizer, examples, features_config, *, batch_size: int, lang: str, device) -> dict:
    """Accuracy/F1 of the in-memory ``model`` on pair ``examples`` (the project's predict + metric path)."""

    was_training = model.training
    model.eval()
    try:
        engine = ModelEngine(model, tokenizer, device=device, head=HEADS["pair-classification"])
        preds = predict_pairs(engine, examples, max_length=features_config.max_length, batch_size=batch_size)
    finally:
        model.train(was_training)
    return pair_metrics(examples, preds, getattr(model.config, "num_labels", 2))
