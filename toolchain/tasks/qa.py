"""The QA task's code for the trainer: SQuAD examples, windowed features, span loss, F1/EM."""

from __future__ import annotations

LABEL_KEYS = ("start_positions", "end_positions")


def feature_config(max_length: int, doc_stride: int, max_query_length: int = 64):
    """Windows of ``max_length`` tokens overlapping by ``doc_stride`` (checked: stride < length)."""
    from kdtool.data import FeatureConfig

    return FeatureConfig(max_length, doc_stride, max_query_length)


def load_examples(path: str | None, limit: int | None = None) -> list:
    from kdtool.data import load_squad

    if path is None:
        return []
    examples = load_squad(path).examples
    return examples[:limit] if limit else examples


def make_features(examples, tokenizer, config, *, with_labels: bool = False):
    from kdtool.data import tokenize_examples

    return tokenize_examples(examples, tokenizer, config, with_labels=with_labels)


def soft_mask(batch: dict):
    """Which logit entries the soft losses compare: every real token."""
    return batch["attention_mask"]


def hard_loss(outputs: tuple, batch: dict):
    from kdtool.losses import span_loss

    start, end = outputs
    return span_loss(start, end, batch["start_positions"], batch["end_positions"], batch["attention_mask"])


def evaluate(model, tokenizer, examples, features_config, *, batch_size: int, lang: str, device) -> dict:
    from kdtool.distill.runtime import evaluate as squad_eval

    return squad_eval(model, tokenizer, examples, features_config, batch_size=batch_size, lang=lang, device=device)
