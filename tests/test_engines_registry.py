"""kdtool.engines: one registry of kinds opens every model, and the one input-feed builder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kdtool.engines import ENGINE_KINDS, load_engine
from kdtool.engines.base import input_feed
from kdtool.errors import InputError
from kdtool.export.config import ExportConfig


def test_every_kind_names_a_loader_that_exists():
    import importlib

    assert [k.name for k in ENGINE_KINDS] == ["tensorrt", "onnxruntime", "pytorch"]
    for kind in ENGINE_KINDS:
        module, attr = kind.loader.split(":")
        assert callable(getattr(importlib.import_module(module), attr))


def test_input_feed_fills_missing_inputs_with_zeros_and_casts():
    batch = {"input_ids": np.array([[5, 6, 7]], dtype=np.int32), "attention_mask": np.ones((1, 3), dtype=np.int64)}
    feed = input_feed(batch, ["input_ids", "attention_mask", "token_type_ids"], {"attention_mask": np.int32})
    assert feed["input_ids"].dtype == np.int64 and feed["attention_mask"].dtype == np.int32
    assert feed["token_type_ids"].tolist() == [[0, 0, 0]] and feed["token_type_ids"].dtype == np.int64
    assert all(a.flags["C_CONTIGUOUS"] for a in feed.values())


def test_a_model_directory_opens_on_pytorch_with_its_head(roberta_dir):
    engine = load_engine(roberta_dir, device="cpu")
    try:
        assert engine.kind == "pytorch" and engine.head.outputs == ("start_logits", "end_logits")
    finally:
        engine.close()


def test_an_unknown_task_or_directory_is_one_line(tmp_path, roberta_dir):
    with pytest.raises(InputError, match="unknown task"):
        load_engine(roberta_dir, task="summarization")
    (tmp_path / "notes.json").write_text(json.dumps({}))
    with pytest.raises(InputError, match="neither a Hugging Face model directory"):
        load_engine(tmp_path)


def test_export_config_names_the_parity_field_when_it_is_the_bad_value(tmp_path):
    with pytest.raises(InputError) as err:
        ExportConfig(tmp_path / "m", tmp_path / "b", parity_samples=0)
    assert "parity_samples" in str(err.value) and "--calibration-samples" not in str(err.value)
    with pytest.raises(InputError, match="--calibration-samples"):
        ExportConfig(tmp_path / "m", tmp_path / "b", calibration_samples=0)
