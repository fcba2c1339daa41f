"""The BiLSTM student: Auto-class round trip, padding invariance, teacher-embedding init, and bundles
whose ONNX graph matches PyTorch (QA and pair-classification heads)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kdtool.students.bilstm import (
    BiLSTMConfig,
    BiLSTMForQuestionAnswering,
    BiLSTMForSequenceClassification,
    init_embeddings_from_teacher,
    reverse_within_length,
)


def _save(model_cls, out, tokenizer, **kw):
    torch.manual_seed(0)
    config = BiLSTMConfig(vocab_size=len(tokenizer), embedding_size=24, hidden_size=16, num_hidden_layers=2,
                          pad_token_id=tokenizer.pad_token_id, max_position_embeddings=256, **kw)
    config.architectures = [model_cls.__name__]
    model = model_cls(config).eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return model


def test_reverse_within_length_keeps_padding_in_place():
    x = torch.arange(10.0).view(2, 5, 1)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    r = reverse_within_length(x, mask)
    assert r[0, :, 0].tolist() == [2.0, 1.0, 0.0, 3.0, 4.0] and r[1, :, 0].tolist() == [9.0, 8.0, 7.0, 6.0, 5.0]
    assert torch.equal(reverse_within_length(r, mask), x)


@pytest.mark.parametrize("cls", [BiLSTMForQuestionAnswering, BiLSTMForSequenceClassification])
def test_auto_classes_load_it_without_remote_code_and_padding_changes_nothing(tmp_path, wordpiece_tokenizer, cls):
    from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification

    model = _save(cls, tmp_path / "m", wordpiece_tokenizer)
    auto = AutoModelForQuestionAnswering if cls is BiLSTMForQuestionAnswering else AutoModelForSequenceClassification
    loaded = auto.from_pretrained(tmp_path / "m").eval()
    assert type(loaded) is cls and "auto_map" not in json.loads((tmp_path / "m" / "config.json").read_text())
    ids = torch.randint(5, len(wordpiece_tokenizer), (1, 9))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], 1)
    mask = torch.cat([torch.ones(1, 9, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long)], 1)
    with torch.no_grad():
        a, b = loaded(input_ids=ids, attention_mask=torch.ones_like(ids)), loaded(input_ids=padded, attention_mask=mask)
        c = model(input_ids=ids)
    name = "start_logits" if cls is BiLSTMForQuestionAnswering else "logits"
    short, long_ = getattr(a, name), getattr(b, name)
    torch.testing.assert_close(short, long_[:, :9] if name == "start_logits" else long_, rtol=0, atol=1e-6)
    torch.testing.assert_close(short, getattr(c, name), rtol=0, atol=1e-6)  # saved == loaded weights
    # and the padding is really masked: without the mask the backward direction reads the pads
    with torch.no_grad():
        unmasked = getattr(loaded(input_ids=padded, attention_mask=torch.ones_like(padded)), name)
    assert not torch.allclose(short, unmasked[:, :9] if name == "start_logits" else unmasked, atol=1e-4)


def test_embedding_init_projects_the_teachers_token_embeddings(bert_dir):
    from kdtool.models import load_qa_model

    teacher = load_qa_model(bert_dir)
    narrow = BiLSTMForQuestionAnswering(BiLSTMConfig(vocab_size=teacher.config.vocab_size, embedding_size=16))
    info = init_embeddings_from_teacher(narrow, teacher)
    source = teacher.get_input_embeddings().weight.detach()
    target = narrow.get_input_embeddings().weight.detach()
    _, _, vh = torch.linalg.svd(source, full_matrices=False)
    torch.testing.assert_close(target, source @ vh[:16].T)
    assert 0 < info["explained_variance"] < 1
    # inner products are approximately kept: the projection is the best rank-16 one
    assert torch.linalg.norm(source @ source.T - target @ target.T) < torch.linalg.norm(source @ source.T)
    same = BiLSTMForQuestionAnswering(BiLSTMConfig(vocab_size=teacher.config.vocab_size, embedding_size=64))
    init_embeddings_from_teacher(same, teacher)
    assert torch.equal(same.get_input_embeddings().weight, source)


@pytest.mark.parametrize("cls,precision", [(BiLSTMForQuestionAnswering, "fp32"), (BiLSTMForQuestionAnswering, "int8"),
                                           (BiLSTMForSequenceClassification, "fp32")])
def test_bundle_matches_pytorch(tmp_path, wordpiece_tokenizer, squad_file, cls, precision):
    from kdtool.data import FeatureConfig, load_squad, tokenize_examples
    from kdtool.engines import load_engine
    from kdtool.export import ExportConfig, export_model

    model = _save(cls, tmp_path / "m", wordpiece_tokenizer)
    bundle = export_model(ExportConfig(tmp_path / "m", tmp_path / "b", precision=precision, calibration_data=squad_file,
                                       max_seq_length=64))
    manifest = json.loads((bundle / "manifest.json").read_text())
    qa = cls is BiLSTMForQuestionAnswering
    assert manifest["task"] == ("question-answering" if qa else "text-classification")
    assert [i["name"] for i in manifest["inputs"]] == ["input_ids", "attention_mask"]
    assert [o["name"] for o in manifest["outputs"]] == (["start_logits", "end_logits"] if qa else ["logits"])
    assert manifest["fusion"] == {}  # the transformer fusion does not apply to an LSTM graph
    assert manifest["parity"]["plain_onnx"]["max_abs_logit_diff"] < 1e-4
    engine = load_engine(bundle, device="cpu")
    feats = tokenize_examples(load_squad(squad_file).examples[:6], wordpiece_tokenizer, FeatureConfig(64, 16, 16))
    batch = feats.batch(range(6))
    assert (batch["attention_mask"] == 0).any()
    got = engine.run(batch)
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in batch.items() if k != "token_type_ids"})
    ref = (out.start_logits, out.end_logits) if qa else (out.logits,)
    mask = batch["attention_mask"].astype(bool)
    tol = 1e-4 if precision == "fp32" else 0.5
    for g, r in zip(got, ref, strict=True):
        r = r.numpy()
        diff = np.abs(g - r)[mask] if qa else np.abs(g - r)
        assert diff.max() < tol, diff.max()
    if qa and precision == "fp32":  # validate and profile take the BiLSTM directory and its bundle like any student
        from click.testing import CliRunner

        from kdtool.cli import main

        res = CliRunner().invoke(main, ["validate", str(tmp_path / "m"), str(bundle), "--data", str(squad_file),
                                        "--max-length", "64", "--doc-stride", "16", "--limit", "8"])
        assert res.exit_code == 0 and "onnxruntime" in res.output and "(reference)" in res.output, res.output
        res = CliRunner().invoke(main, ["profile", str(tmp_path / "m"), str(bundle), "--seq-len", "32", "--runs", "2",
                                        "--warmup", "1", "--threads", "1"])
        assert res.exit_code == 0 and "x" in res.stdout, res.output
    if precision == "int8":  # the LSTMs themselves run quantized
        import onnx

        ops = {n.op_type for n in onnx.load(str(bundle / "model.onnx")).graph.node}
        assert manifest["quantization"]["mode"] == "dynamic" and "DynamicQuantizeLSTM" in ops and "LSTM" not in ops
