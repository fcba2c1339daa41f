"""Real question lengths for a profile: the (evenly sampled) questions of a SQuAD file, tokenized into
windows by each model's own tokenizer, and a summary of their lengths for the report."""

from __future__ import annotations

import numpy as np

from kdtool.data import FeatureConfig, tokenize_examples
from kdtool.predict import feature_config_for
from kdtool.profiles.timing import error_text


def sample_examples(examples: list, limit: int | None) -> list:
    """At most ``limit`` examples, evenly spread over the file (all of them when ``limit`` is None)."""
    if limit and limit < len(examples):
        keep = np.linspace(0, len(examples) - 1, limit).round().astype(int)
        return [examples[k] for k in sorted(set(keep.tolist()))]
    return examples


def data_features(ds, engines: list, infos: list[dict], config) -> tuple[dict, list]:
    """Tokenize the (sampled) questions of ``ds`` (a ProfileConfig's ``data``) with each model's tokenizer."""
    examples = sample_examples(ds.examples, config.data_limit)
    block = {"file": str(config.data), "questions_in_file": len(ds.examples), "questions_used": len(examples),
             "selection": "all" if len(examples) == len(ds.examples) else "evenly spaced over the file",
             "lengths": [], "rows": []}
    features = []
    for info, engine in zip(infos, engines, strict=True):
        try:
            fc = feature_config_for(engine, FeatureConfig())
            feats = tokenize_examples(examples, engine.tokenizer, fc)
        except Exception as err:  # noqa: BLE001 - this model's rows say why; the others still run
            block["lengths"].append({"model": info["name"], "model_index": info["index"], "error": error_text(err)})
            features.append(None)
            continue
        lengths = feats.lengths
        block["lengths"].append({
            "model": info["name"], "model_index": info["index"], "max_length": fc.max_length,
            "doc_stride": fc.doc_stride, "windows": len(feats),
            "min": int(lengths.min()), "median": float(np.median(lengths)), "p90": float(np.percentile(lengths, 90)),
            "max": int(lengths.max()), "mean": round(float(lengths.mean()), 2), "error": None})
        features.append(feats)
    return block, features
