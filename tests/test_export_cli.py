"""kdtool export / build-engine from the command line: good runs and bad input, one line each."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from kdtool.cli import main
from kdtool.engines.trt import build_unavailable_reason

NO_TRT = build_unavailable_reason()


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_error(result, code, *needles):
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output and all(n in lines[0] for n in needles), lines[0]


def test_not_a_qa_model(tmp_path, wordpiece_tokenizer):
    from transformers import BertConfig, BertModel

    src = tmp_path / "encoder"
    BertModel(BertConfig(vocab_size=len(wordpiece_tokenizer), hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64)).save_pretrained(src)
    wordpiece_tokenizer.save_pretrained(src)
    result = run("export", src, "-o", tmp_path / "out")
    assert_one_line_error(result, 2, "not a question-answering model")
    assert not (tmp_path / "out").exists()


def test_model_without_tokenizer(tmp_path, roberta_dir):
    src = tmp_path / "no-tok"
    src.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(roberta_dir / name, src / name)
    result = run("export", src, "-o", tmp_path / "out")
    assert_one_line_error(result, 2, "no usable tokenizer")
    assert not (tmp_path / "out").exists()


def test_unknown_profile_lists_the_known_ones(tmp_path, roberta_dir):
    result = run("export", roberta_dir, "-o", tmp_path / "out", "--profile", "nvidia-a100")
    assert_one_line_error(result, 2, "nvidia-a100", "x86-avx512-vnni", "jetson-orin", "nvidia-h100")
    assert not (tmp_path / "out").exists()


def test_int8_static_needs_calibration_data(tmp_path, roberta_dir):
    result = run("export", roberta_dir, "-o", tmp_path / "out", "--precision", "int8-static")
    assert_one_line_error(result, 2, "--calibration-data")
    assert not (tmp_path / "out").exists()


def test_reduce_range_needs_an_int8_precision(tmp_path, roberta_dir):
    result = run("export", roberta_dir, "-o", tmp_path / "out", "--reduce-range")
    assert_one_line_error(result, 2, "--reduce-range", "fp32")
    assert not (tmp_path / "out").exists()


def test_fast_gelu_needs_the_fused_graph(tmp_path, roberta_dir):
    result = run("export", roberta_dir, "-o", tmp_path / "out", "--precision", "int8", "--fast-gelu", "--no-fuse")
    assert_one_line_error(result, 2, "--fast-gelu", "--no-fuse")
    assert not (tmp_path / "out").exists()


def test_missing_model_and_existing_output(tmp_path, roberta_dir):
    assert_one_line_error(run("export", tmp_path / "nope", "-o", tmp_path / "out"), 2, "not found")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("x")
    assert_one_line_error(run("export", roberta_dir, "-o", tmp_path / "taken"), 2, "--overwrite")
    assert (tmp_path / "taken" / "keep.txt").exists()


@pytest.mark.skipif(NO_TRT is None, reason="TensorRT and a GPU are present here: the engine gets built instead")
def test_trt_without_tensorrt_still_bundles_and_says_how_to_build(tmp_path, roberta_dir):
    out = tmp_path / "bundle"
    result = run("export", roberta_dir, "-o", out, "--trt", "--precision", "fp16", "--profile", "nvidia-t4")
    assert result.exit_code == 0, result.output
    hint = [line for line in result.stdout.splitlines() if "kdtool build-engine" in line]
    assert len(hint) == 1 and str(out) in hint[0] and NO_TRT in hint[0]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tensorrt"]["built"] is False and manifest["trt_onnx"] == "model.trt.onnx"
    assert manifest["device_profile"]["name"] == "nvidia-t4" and manifest["max_seq_length"] == 384
    assert "model.trt.onnx" in manifest["files"] and not (out / "model.engine").exists()
    # the instruction it printed fails here in one line, and leaves the bundle as it was
    before = (out / "manifest.json").read_bytes()
    assert_one_line_error(run("build-engine", out), 3, "target device")
    assert (out / "manifest.json").read_bytes() == before


def test_build_engine_needs_a_trt_ready_bundle(tmp_path, roberta_dir):
    out = tmp_path / "bundle"
    assert run("export", roberta_dir, "-o", out, "--no-fuse").exit_code == 0
    assert_one_line_error(run("build-engine", out), 2, "export it with kdtool export --trt")
