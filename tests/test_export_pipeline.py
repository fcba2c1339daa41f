"""kdtool export on tiny BERT and RoBERTa QA models, every precision, run on ONNX Runtime CPU.

Bundles are exported once per (model, precision) and shared by the tests of this module.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import pytest

from kdtool.data import FeatureConfig, load_squad, tokenize_examples
from kdtool.engines import load_engine
from kdtool.engines.ort import OrtEngine
from kdtool.engines.pytorch import TorchQAEngine
from kdtool.export.config import ExportConfig
from kdtool.export.fp16 import fp32_ops_in
from kdtool.export.pipeline import export_model
from kdtool.predict import PredictConfig, predict

KINDS = ["roberta", "bert"]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, roberta_dir, bert_dir, squad_file):
    made = {}
    root = tmp_path_factory.mktemp("bundles")
    dirs = {"roberta": roberta_dir, "bert": bert_dir}

    def get(kind: str, precision: str, **options):
        key = (kind, precision, tuple(sorted(options.items())))
        if key not in made:
            name = f"{kind}-{precision}" + "".join(f"-{k}-{v}" for k, v in sorted(options.items()))
            made[key] = export_model(ExportConfig(dirs[kind], root / name, precision=precision,
                                                  calibration_data=squad_file, calibration_samples=32, **options))
        return made[key]

    return get


def manifest(bundle) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def _answers(engine, squad_file) -> dict[str, str]:
    examples = load_squad(squad_file).examples
    return {k: p.text for k, p in predict(engine, examples, PredictConfig(batch_size=8)).items()}


def _agreement(a: dict, b: dict) -> float:
    return sum(a[k] == b[k] for k in a) / len(a)


def _features(engine, squad_file):
    examples = load_squad(squad_file).examples
    feats = tokenize_examples(examples, engine.tokenizer, FeatureConfig(128, 32, 32))
    return feats.batch(list(range(min(12, len(feats)))))


@pytest.mark.parametrize("kind", KINDS)
def test_fp32_bundle_logits_match_pytorch(bundles, kind, roberta_dir, bert_dir, squad_file):
    bundle = bundles(kind, "fp32")
    engine = load_engine(bundle, device="cpu")
    assert isinstance(engine, OrtEngine) and engine.kind == "onnxruntime"
    torch_engine = TorchQAEngine({"roberta": roberta_dir, "bert": bert_dir}[kind], device="cpu")
    batch = _features(engine, squad_file)
    s1, e1 = engine.run({k: batch[k] for k in engine.input_names if k in batch})
    s0, e0 = torch_engine.run({k: batch[k] for k in torch_engine.input_names if k in batch})
    mask = batch["attention_mask"].astype(bool)
    assert np.abs(s1 - s0)[mask].max() < 1e-4 and np.abs(e1 - e0)[mask].max() < 1e-4
    m = manifest(bundle)
    assert m["parity"]["bundle"]["max_abs_logit_diff"] < 1e-4
    assert m["fusion"] == {"Attention": 2, "SkipLayerNormalization": 4, "BiasGelu": 2, "LayerNormalization": 1}
    assert engine.num_parameters() == torch_engine.num_parameters()
    assert _answers(engine, squad_file) == _answers(torch_engine, squad_file)


def test_fp32_manifest_records_what_the_bundle_is(bundles, roberta_dir):
    m = manifest(bundles("roberta", "fp32"))
    assert m["precision"] == "fp32" and m["opset"] == 18 and m["schema_version"] == 1
    assert m["max_seq_length"] == 384  # the default window (tests/test_adapt_or_refuse.py: a shorter model clips it)
    assert [i["name"] for i in m["inputs"]] == ["input_ids", "attention_mask"]
    assert m["inputs"][0]["shape"] == ["batch_size", "sequence_length"] and m["inputs"][0]["dtype"] == "int64"
    assert {o["name"] for o in m["outputs"]} == {"start_logits", "end_logits"}
    assert len(m["source"]["sha256"]) == 64 and m["source"]["path"] == str(roberta_dir.resolve())
    assert {"model.onnx", "config.json", "tokenizer.json"} <= set(m["files"])
    assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in m["files"].values())


@pytest.mark.parametrize("kind", KINDS)
def test_unfused_export_matches_too(bundles, kind, squad_file):
    fused, plain = bundles(kind, "fp32"), bundles(kind, "fp32", fuse=False)
    assert manifest(plain)["fusion"] == {}
    ops = Counter(n.op_type for n in onnx.load(str(plain / "model.onnx")).graph.node)
    assert "Attention" not in ops and ops["MatMul"] > 0
    assert _answers(load_engine(plain), squad_file) == _answers(load_engine(fused), squad_file)


@pytest.mark.parametrize("kind", KINDS)
def test_int8_dynamic_quantizes_attention_and_mostly_agrees(bundles, kind, squad_file):
    fp32, int8 = bundles(kind, "fp32"), bundles(kind, "int8")
    ops = Counter(n.op_type for n in onnx.load(str(int8 / "model.onnx")).graph.node)
    assert ops["QAttention"] == 2 and ops["MatMulInteger"] >= 4
    assert (int8 / "model.onnx").stat().st_size < (fp32 / "model.onnx").stat().st_size
    assert manifest(int8)["quantization"]["mode"] == "dynamic" and manifest(int8)["quantization"]["per_channel"] is True
    assert _agreement(_answers(load_engine(fp32), squad_file), _answers(load_engine(int8), squad_file)) >= 0.7


def _weight_scale_sizes(bundle) -> set[int]:
    """Element counts of the INT8 weight scales of MatMulInteger nodes (1: per tensor, width: per channel)."""
    graph = onnx.load(str(bundle / "model.onnx")).graph
    inits = {i.name: i for i in graph.initializer}
    sizes = set()
    for node in graph.node:
        if node.op_type == "MatMulInteger" and node.input[1] in inits:
            zero_point = inits.get(node.input[3]) if len(node.input) > 3 else None
            sizes.add(int(np.prod(zero_point.dims)) if zero_point is not None else 1)
    return sizes


def test_int8_weights_are_per_channel_unless_per_tensor_is_asked(bundles):
    per_channel, per_tensor = bundles("bert", "int8"), bundles("bert", "int8", per_channel=False)
    assert _weight_scale_sizes(per_tensor) == {1}
    assert min(_weight_scale_sizes(per_channel)) > 1
    assert manifest(per_tensor)["quantization"]["per_channel"] is False


def _largest_int8_weight(bundle) -> int:
    """max |w| over the INT8 weights of MatMulInteger and QAttention nodes."""
    from onnx import numpy_helper

    graph = onnx.load(str(bundle / "model.onnx")).graph
    inits = {i.name: i for i in graph.initializer}
    weights = [inits[n.input[1]] for n in graph.node if n.op_type in ("MatMulInteger", "QAttention") and n.input[1] in inits]
    assert weights
    return max(int(np.abs(numpy_helper.to_array(w).astype(np.int32)).max()) for w in weights)


def test_reduce_range_keeps_int8_weights_within_seven_bits(bundles, squad_file):
    full, reduced = bundles("bert", "int8"), bundles("bert", "int8", reduce_range=True)
    assert _largest_int8_weight(full) == 127  # symmetric per-channel scales use the whole range
    assert _largest_int8_weight(reduced) <= 64  # so u8 x s8 pair sums stay inside int16 on AVX2
    assert manifest(reduced)["quantization"]["reduce_range"] is True
    fp32 = bundles("bert", "fp32")
    assert _agreement(_answers(load_engine(fp32), squad_file), _answers(load_engine(reduced), squad_file)) >= 0.7


@pytest.mark.parametrize("kind", KINDS)
def test_fast_gelu_int8_swaps_the_gelu_and_mostly_agrees(bundles, kind, squad_file):
    fp32, fast = bundles(kind, "fp32"), bundles(kind, "int8", fast_gelu=True)
    ops = Counter(n.op_type for n in onnx.load(str(fast / "model.onnx")).graph.node)
    assert ops["FastGelu"] == 2 and not ops["BiasGelu"] and not ops["Gelu"] and ops["QAttention"] == 2
    assert manifest(fast)["fusion"]["FastGelu"] == 2
    assert _agreement(_answers(load_engine(fp32), squad_file), _answers(load_engine(fast), squad_file)) >= 0.7


@pytest.mark.parametrize("kind", KINDS)
def test_int8_static_is_calibrated_qdq_and_mostly_agrees(bundles, kind, squad_file):
    fp32, static = bundles(kind, "fp32"), bundles(kind, "int8-static")
    model = onnx.load(str(static / "model.onnx"))
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0 and "MatMulInteger" not in ops
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    assert matmuls and all(producers.get(i) == "DequantizeLinear" for n in matmuls for i in n.input)  # int8 both sides
    q = manifest(static)["quantization"]
    assert q["format"] == "QDQ" and q["calibration_method"] == "minmax" and q["calibration_windows"] > 0
    assert _agreement(_answers(load_engine(fp32), squad_file), _answers(load_engine(static), squad_file)) >= 0.7


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_calibration_works_on_windows_of_any_length(bundles, method, squad_file):
    """Histogram calibrators stack activations across batches: windows of different lengths broke them."""
    bundle = bundles("roberta", "int8-static", calibration_method=method)
    assert manifest(bundle)["quantization"]["calibration_method"] == method
    assert _agreement(_answers(load_engine(bundles("roberta", "fp32")), squad_file),
                      _answers(load_engine(bundle), squad_file)) >= 0.5


@pytest.mark.parametrize("kind", KINDS)
def test_fp16_graph_is_valid_keeps_layernorm_fp32_and_runs(bundles, kind, squad_file):
    fp32, fp16 = bundles(kind, "fp32"), bundles(kind, "fp16", trt=True)
    path = fp16 / "model.onnx"
    onnx.checker.check_model(str(path))
    model = onnx.load(str(path))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    kept = fp32_ops_in(path)
    norms = {n: t for n, t in kept.items() if "LayerNorm" in n or "LayerNormalization" in n}
    assert len(norms) >= 5 and set(norms.values()) == {"FLOAT"}
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert manifest(fp16)["parity"]["bundle"]["max_abs_logit_diff"] < 1e-2
    assert _agreement(_answers(load_engine(fp32), squad_file), _answers(load_engine(fp16), squad_file)) >= 0.9


def _standard_ops_only(model) -> set[str]:
    return {n.domain for n in model.graph.node} - {"", "ai.onnx"}


@pytest.mark.parametrize("precision", ["fp16", "int8-static"])
def test_trt_ready_onnx_is_standard_explicit_and_runs_on_ort_cpu(bundles, precision, squad_file):
    bundle = bundles("roberta", precision, trt=True)
    path = bundle / "model.trt.onnx"
    onnx.checker.check_model(str(path))
    model = onnx.load(str(path))
    assert _standard_ops_only(model) == set()
    ops = Counter(n.op_type for n in model.graph.node)
    if precision == "fp16":
        assert ops["Cast"] > 0 and any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    else:  # symmetric INT8 Q/DQ: every zero point is an int8 zero
        zps = [i for i in model.graph.initializer if i.name.endswith("_zero_point")]
        assert ops["QuantizeLinear"] > 0 and zps
        assert all(i.data_type == onnx.TensorProto.INT8 and not onnx.numpy_helper.to_array(i).any() for i in zps)
    t = manifest(bundle)["tensorrt"]
    assert t["precision"] == ("fp16" if precision == "fp16" else "int8") and t["onnx"]["precision"] == t["precision"]
    from kdtool.export.onnx_export import ort_session, run_session

    engine = load_engine(bundle, device="cpu")
    batch = _features(engine, squad_file)
    s_trt, _ = run_session(ort_session(path), batch)
    s_ref, _ = engine.run(batch)
    mask = batch["attention_mask"].astype(bool)
    assert np.abs(s_trt - s_ref)[mask].max() < 0.1
