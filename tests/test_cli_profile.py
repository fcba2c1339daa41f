"""``kdtool profile``: outputs on real tiny models, and one line + non-zero exit for bad input."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from kdtool.cli import main


def _run(*args):
    return CliRunner().invoke(main, ["profile", *map(str, args)])


def _one_line_error(res, code: int, *needles: str) -> None:
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert lines[-1].startswith("Error:"), res.stderr
    for n in needles:
        assert n in lines[-1]


def test_profile_writes_table_json_markdown_plot(tmp_path, roberta_dir, bert_dir, squad_file):
    out = {k: tmp_path / f"p.{k}" for k in ("json", "md", "png")}
    res = _run(roberta_dir, bert_dir, "--seq-len", "16,32", "--batch-size", "1", "--runs", 3, "--warmup", 1,
               "--threads", 1, "--data", squad_file, "--data-limit", 10, "--json", out["json"],
               "--markdown", out["md"], "--plot", out["png"])
    assert res.exit_code == 0, res.output
    assert "Latency at fixed shapes" in res.stdout and "1.00x" in res.stdout and "real lengths" in res.stdout
    assert "%]" in res.stderr  # progress lines when stderr is not a terminal
    report = json.loads(out["json"].read_text())
    assert report["reference"] == "roberta" and [m["name"] for m in report["models"]] == ["roberta", "bert"]
    assert report["data"]["questions_used"] == 10 and report["settings"]["threads"] == 1
    assert out["md"].read_text().startswith("# Latency profile")
    png = out["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_unknown_model_path(tmp_path, roberta_dir):
    _one_line_error(_run(roberta_dir, tmp_path / "nope"), 2, "model not found", "nope")


def test_unknown_profile(roberta_dir):
    _one_line_error(_run(roberta_dir, "--profile", "no-such-device"), 2, "unknown device profile", "x86-avx512-vnni")


def test_gpu_profile_without_gpu(roberta_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    _one_line_error(_run(roberta_dir, "--profile", "nvidia-t4"), 3, "no CUDA GPU")


def test_missing_data_file(tmp_path, roberta_dir):
    _one_line_error(_run(roberta_dir, "--data", tmp_path / "missing.json"), 2, "missing.json")


def test_not_a_model_directory(squad_file):
    _one_line_error(_run(squad_file), 2, "is a file")


def test_bad_shape_list(roberta_dir):
    res = _run(roberta_dir, "--seq-len", "128,abc")
    assert res.exit_code == 2 and "Traceback" not in res.output and "--seq-len" in res.stderr


def test_torch_variants_open_each_model_dir_once_per_dtype_and_attention(tmp_path, roberta_dir):
    out = tmp_path / "p.json"
    res = _run(roberta_dir, "--device", "cpu", "--torch-variant", "fp32:sdpa", "--torch-variant", "bf16:eager",
               "--torch-variant", "fp32:torch-triton", "--seq-len", "16", "--batch-size", "1", "--runs", 2, "--warmup", 1,
               "--threads", 1, "--json", out)
    assert res.exit_code == 0, res.output
    report = json.loads(out.read_text())
    models = report["models"]
    assert [m["name"] for m in models] == ["roberta[fp32,sdpa]", "roberta[bf16,eager]", "roberta[fp32,torch-triton]"]
    # what was actually loaded, read off each model
    assert [m["precision"] for m in models] == ["fp32", "bf16", "fp32"]
    assert [m["attn_implementation"] for m in models] == ["sdpa", "eager", "torch-triton"]
    assert report["settings"]["device"] == "cpu" and report["settings"]["torch_variants"] == ["fp32:sdpa", "bf16:eager",
                                                                                               "fp32:torch-triton"]
    rows = report["fixed"]
    assert [r["model"] for r in rows] == [m["name"] for m in models] and all(r["status"] == "ok" for r in rows)
    assert rows[0]["speedup"] == 1.0 and rows[1]["latency_ms"]["p50"] > 0


@pytest.mark.parametrize("variant", ["fp8:sdpa", "fp16", "fp16:flash", "fp16:sdpa,bf16:sdpa"])
def test_bad_torch_variant_is_one_line(roberta_dir, variant):
    _one_line_error(_run(roberta_dir, "--device", "cpu", "--torch-variant", variant), 2, "torch variant", variant)


def test_device_cuda_without_gpu_is_one_line(roberta_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible")
    _one_line_error(_run(roberta_dir, "--device", "cuda"), 3, "no CUDA GPU", "--device cpu")  # 3: unsupported here
