"""SQuAD data path: loading and validation, features, post-processing."""

from kdtool.data.features import (
    MAX_LENGTH,
    MODEL_INPUTS,
    FeatureConfig,
    QAFeatures,
    fit_window,
    length_sorted_batches,
    tokenize_examples,
)
from kdtool.data.postprocess import PostprocessConfig, Prediction, postprocess
from kdtool.data.squad import (
    Answer,
    Example,
    LoadReport,
    SquadDataset,
    load_squad,
    parse_squad,
    split_by_article,
    to_squad_json,
)

__all__ = [
    "MAX_LENGTH", "MODEL_INPUTS", "Answer", "Example", "FeatureConfig", "LoadReport", "PostprocessConfig", "Prediction",
    "QAFeatures", "SquadDataset", "fit_window", "length_sorted_batches", "load_squad", "parse_squad", "postprocess",
    "split_by_article", "to_squad_json", "tokenize_examples",
]
