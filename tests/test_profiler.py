"""kdtool.profiles.profiler on real tiny models: schema, ordering, speed-up arithmetic, real lengths.

No timer is mocked: the numbers are real (and noisy); the tests check structure and arithmetic,
never that one model is faster than another.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tiny

from kdtool.profiles.profiler import SCHEMA, ProfileConfig, profile_models
from kdtool.profiles.report import format_markdown, format_table, render_plot

SEQ, BATCH = [16, 48], [1, 2]
STATS = {"p50", "p90", "p99", "mean", "std", "min", "max"}


@pytest.fixture(scope="module")
def bigger_dir(tmp_path_factory, bpe_tokenizer):
    """A tiny RoBERTa, wider and deeper than ``roberta_dir``: the reference."""
    return tiny.tiny_qa_model(tmp_path_factory.mktemp("models") / "bigger", bpe_tokenizer, "roberta", layers=3,
                              hidden=128, intermediate=256)


@pytest.fixture(scope="module")
def short_bert_dir(tmp_path_factory, wordpiece_tokenizer):
    """A tiny BERT (token_type_ids) that accepts at most 32 tokens: seq 48 is beyond it."""
    return tiny.tiny_qa_model(tmp_path_factory.mktemp("models") / "short-bert", wordpiece_tokenizer, "bert",
                              max_positions=32, seed=2)


@pytest.fixture(scope="module")
def result(bigger_dir, roberta_dir, short_bert_dir, squad_file):
    config = ProfileConfig(models=[bigger_dir, roberta_dir, short_bert_dir], seq_lengths=SEQ, batch_sizes=BATCH,
                           runs=3, warmup=1, threads=1, data=squad_file, data_limit=None)
    seen = []
    res = profile_models(config, progress=lambda e: seen.append((e.done, e.total)) if e.task == "profile" else None)
    out = json.loads(json.dumps(res.to_dict()))  # what --json writes
    out["_progress"] = seen
    return out


def test_top_level_schema(result):
    assert result["schema"] == SCHEMA
    for key, typ in (("kdtool_version", str), ("created_utc", str), ("interrupted", bool), ("environment", dict),
                     ("settings", dict), ("reference", str), ("models", list), ("fixed", list), ("data", dict)):
        assert isinstance(result[key], typ), key
    assert result["interrupted"] is False
    env = result["environment"]
    for key in ("kdtool", "python", "torch", "transformers", "onnxruntime", "cpu", "cpu_cores_logical", "threads",
                "device", "gpu", "profile", "load_average"):
        assert key in env
    assert env["threads"] == 1 and env["device"] == "cpu" and env["profile"] == "auto: cpu"
    s = result["settings"]
    assert (s["seq_lengths"], s["batch_sizes"], s["runs"], s["warmup"]) == (SEQ, BATCH, 3, 1)


def test_models_in_given_order_reference_first(result, bigger_dir, roberta_dir, short_bert_dir):
    models = result["models"]
    assert [m["path"] for m in models] == [str(bigger_dir), str(roberta_dir), str(short_bert_dir)]
    assert [m["index"] for m in models] == [0, 1, 2]
    assert [m["is_reference"] for m in models] == [True, False, False]
    assert result["reference"] == models[0]["name"] == "bigger"
    for m in models:
        assert m["kind"] == "pytorch" and m["precision"] == "fp32" and m["timer"] == "wall-clock"
        assert isinstance(m["parameters"], int) and m["parameters"] > 0
        assert isinstance(m["size_bytes"], int) and m["size_bytes"] > 0
        assert isinstance(m["load_rss_delta_bytes"], int)
    assert models[0]["parameters"] > models[1]["parameters"]
    assert "token_type_ids" in models[2]["input_names"] and models[2]["max_length"] == 32


def test_fixed_rows_ordered_by_shape_then_model(result):
    keys = [(r["batch_size"], r["seq_len"], r["model_index"]) for r in result["fixed"]]
    assert keys == [(b, s, i) for b in BATCH for s in SEQ for i in range(3)]
    assert [r["model"] for r in result["fixed"][:3]] == [m["name"] for m in result["models"]]


def test_fixed_row_schema_and_statistics(result):
    for r in result["fixed"]:
        assert set(r) >= {"model", "model_index", "batch_size", "seq_len", "status", "error", "runs", "latency_ms",
                          "throughput_qps", "speedup", "within_budget", "memory"}
        if r["status"] != "ok":
            continue
        lat = r["latency_ms"]
        assert set(lat) == STATS and r["runs"] == 3
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert lat["min"] <= lat["mean"] <= lat["max"] and lat["std"] >= 0
        assert r["throughput_qps"] == pytest.approx(r["batch_size"] / (lat["mean"] / 1e3), rel=1e-3)
        mem = r["memory"]
        assert mem["rss_peak_bytes"] > 0 and mem["rss_peak_delta_bytes"] >= 0 and mem["cuda_peak_bytes"] is None
        assert r["within_budget"] is None  # no profile, no budget


def test_speedup_is_reference_p50_over_p50_of_the_same_shape(result):
    by_shape = {}
    for r in result["fixed"]:
        by_shape.setdefault((r["batch_size"], r["seq_len"]), []).append(r)
    for rows in by_shape.values():
        ref = rows[0]
        assert ref["model_index"] == 0 and ref["speedup"] == 1.0
        for r in rows[1:]:
            if r["status"] == "ok":
                assert r["speedup"] == pytest.approx(ref["latency_ms"]["p50"] / r["latency_ms"]["p50"], rel=1e-12)
            else:
                assert r["speedup"] is None


def test_shape_beyond_max_length_is_an_error_in_its_row_only(result):
    rows = {(r["batch_size"], r["seq_len"], r["model_index"]): r for r in result["fixed"]}
    for b in BATCH:
        bad = rows[(b, 48, 2)]
        assert bad["status"] == "error" and "exceeds" in bad["error"] and "32" in bad["error"]
        assert bad["latency_ms"] is None and bad["runs"] == 0 and bad["speedup"] is None
        assert rows[(b, 48, 0)]["status"] == rows[(b, 48, 1)]["status"] == "ok"
        assert rows[(b, 16, 2)]["status"] == "ok"


def test_data_mode_uses_the_lengths_of_the_given_file(result, squad_file, roberta_dir, squad_obj):
    from transformers import AutoTokenizer

    d = result["data"]
    questions = [(qa["question"], p["context"]) for a in squad_obj["data"] for p in a["paragraphs"] for qa in p["qas"]]
    assert d["file"] == str(squad_file) and d["questions_in_file"] == d["questions_used"] == len(questions)
    # independent count: the tokenizer itself on question + context (one window each at 256 tokens)
    tok = AutoTokenizer.from_pretrained(roberta_dir)
    lengths = np.array([len(tok(q, c)["input_ids"]) for q, c in questions])
    got = d["lengths"][1]
    assert got["model_index"] == 1 and got["windows"] == len(questions)
    assert (got["min"], got["median"], got["max"]) == (lengths.min(), np.median(lengths), lengths.max())
    assert got["p90"] == pytest.approx(np.percentile(lengths, 90))
    short = d["lengths"][2]  # 32-token windows: long questions split into several
    assert short["max_length"] == 32 and short["max"] <= 32 and short["windows"] > len(questions)


def test_data_rows_statistics_and_speedup(result):
    rows = result["data"]["rows"]
    assert [(r["batch_size"], r["model_index"]) for r in rows] == [(b, i) for b in BATCH for i in range(3)]
    for b in BATCH:
        group = [r for r in rows if r["batch_size"] == b]
        ref = group[0]
        for r in group:
            assert r["status"] == "ok", r["error"]
            lat = r["question_latency_ms"]
            assert set(lat) == STATS and r["questions"] == result["data"]["questions_used"]
            assert r["batches"] == -(-r["windows"] // b)
            assert r["questions_per_second"] > 0
            assert r["speedup"] == pytest.approx(ref["question_latency_ms"]["p50"] / lat["p50"], rel=1e-12)


def test_progress_reports_monotonic_to_the_total(result):
    seen = result["_progress"]
    assert seen and all(b[0] >= a[0] for a, b in zip(seen, seen[1:], strict=False))
    assert seen[-1][0] == seen[-1][1]


def test_renderers(result):
    text = format_table(result)
    assert "Latency at fixed shapes" in text and "real lengths" in text and "exceeds" in text
    assert text.index("bigger") < text.index("roberta") < text.index("short-bert")
    md = format_markdown(result)
    assert md.startswith("# Latency profile") and "| batch | seq | model |" in md
    png = render_plot(result)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_ctrl_c_returns_what_was_measured(roberta_dir, bert_dir):
    calls = []

    def interrupt_after_a_few(event):
        if event.task != "profile":
            return  # a line about the next shape, not a count
        calls.append(event.done)
        if len(calls) == 6:
            raise KeyboardInterrupt

    res = profile_models(ProfileConfig(models=[roberta_dir, bert_dir], seq_lengths=[16, 32], batch_sizes=[1], runs=50,
                                       warmup=1, threads=1), progress=interrupt_after_a_few).to_dict()
    assert res["interrupted"] is True
    assert [r["seq_len"] for r in res["fixed"]] == [16, 16]  # the second shape never started
    for r in res["fixed"]:
        assert r["status"] == "interrupted" and 0 < r["runs"] < 50 and r["latency_ms"]["p50"] > 0
    assert res["fixed"][1]["speedup"] == pytest.approx(res["fixed"][0]["latency_ms"]["p50"]
                                                       / res["fixed"][1]["latency_ms"]["p50"])


def test_profile_defaults_come_from_the_device_profile(roberta_dir):
    from kdtool.profiles.profiler import resolve_settings
    from kdtool.profiles.registry import get_profile

    prof = get_profile("x86-avx512-vnni")
    s, p = resolve_settings(ProfileConfig(models=[roberta_dir], profile=prof.name))
    assert p is prof and s["profile"] == prof.name and s["device"] == prof.device
    assert s["seq_lengths"] == list(prof.seq_lengths) and s["batch_sizes"] == list(prof.batch_sizes)
    assert s["latency_budget_ms"] == prof.latency_budget_ms
    s, _ = resolve_settings(ProfileConfig(models=[roberta_dir], profile=prof.name, seq_lengths=[64]))
    assert s["seq_lengths"] == [64]  # explicit options win over the profile


def test_bundle_beside_a_model_dir(tmp_path, roberta_dir):
    pipeline = pytest.importorskip("kdtool.export.pipeline", reason="export pipeline not available")
    from kdtool.export.config import ExportConfig

    bundle = pipeline.export_model(ExportConfig(model_dir=roberta_dir, output=tmp_path / "bundle", precision="fp32",
                                                fuse=False, max_seq_length=64, parity_samples=2))
    res = profile_models(ProfileConfig(models=[roberta_dir, bundle], seq_lengths=[16, 96], batch_sizes=[1], runs=3,
                                       warmup=1, threads=1)).to_dict()
    assert [m["kind"] for m in res["models"]] == ["pytorch", "onnxruntime"]
    assert res["models"][1]["max_length"] == 64 and res["models"][1]["parameters"] == res["models"][0]["parameters"]
    ok, beyond = res["fixed"][1], res["fixed"][3]
    assert ok["status"] == "ok" and ok["speedup"] == pytest.approx(res["fixed"][0]["latency_ms"]["p50"]
                                                                   / ok["latency_ms"]["p50"])
    assert beyond["status"] == "error" and "exceeds" in beyond["error"] and res["fixed"][2]["status"] == "ok"
    # torch variants open the model directory once per variant; the bundle (fixed at export) once
    res = profile_models(ProfileConfig(models=[roberta_dir, bundle], seq_lengths=[16], batch_sizes=[1], runs=1, warmup=1,
                                       threads=1, torch_variants=["fp32:eager", "bf16:sdpa"])).to_dict()
    assert [m["name"] for m in res["models"]] == ["roberta[fp32,eager]", "roberta[bf16,sdpa]", "bundle"]
    assert [m["precision"] for m in res["models"]][:2] == ["fp32", "bf16"] and "attn_implementation" not in res["models"][2]
