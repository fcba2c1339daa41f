"""Every strategy through the one trainer: its loss components on tiny models (zero when the student
is the teacher where that holds, non-zero once they differ, gradients to the student only), and one
tiny end-to-end run per task (QA and pair classification) through distill, export and validate."""

from __future__ import annotations

import copy
import json

import pytest
import tiny
import torch
from click.testing import CliRunner

from kdtool.cli import main
from kdtool.distill import DistillConfig
from kdtool.distill.mapping import layer_map
from kdtool.distill.objective import Objective, teacher_targets
from kdtool.strategies import STRATEGIES
from kdtool.tasks import TASKS

ZERO_AT_IDENTITY = {"attention", "hidden", "embedding", "cosine", "patient"}  # + prediction unless soft-ce (entropy)
SMALL = ["--max-length", "64", "--doc-stride", "16", "--max-query-length", "16", "--batch-size", "8", "--lr", "1e-3",
         "--no-progress"]


def _student(strategy: str, tokenizer):
    torch.manual_seed(0)
    if strategy == "bilstm":
        from kdtool.students.bilstm import BiLSTMConfig, BiLSTMForQuestionAnswering

        return BiLSTMForQuestionAnswering(BiLSTMConfig(vocab_size=len(tokenizer), embedding_size=16, hidden_size=8,
                                                       pad_token_id=tokenizer.pad_token_id, dropout=0.0))
    from transformers import BertConfig, BertForQuestionAnswering

    return BertForQuestionAnswering(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=3,
                                               num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
                                               hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                               pad_token_id=tokenizer.pad_token_id))


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_strategy_losses_vanish_at_the_teacher_and_train_only_the_student(name, wordpiece_tokenizer, squad_file):
    from kdtool.data import FeatureConfig, load_squad, tokenize_examples

    strategy = STRATEGIES[name]
    student = _student(name, wordpiece_tokenizer).eval()
    teacher = copy.deepcopy(student).eval().requires_grad_(False)
    config = DistillConfig(model="-", train_file="-", output="-", strategy=name, projection=None
                           if strategy.projection == "none" else "shared")
    n = student.config.num_hidden_layers
    lmap = layer_map(n, n, config.layer_map) if config.schedule != "prediction" else {}
    objective = Objective(student, config=config, layer_map=lmap, teacher_hidden=teacher.config.hidden_size,
                          task=TASKS["qa"])
    feats = tokenize_examples(load_squad(squad_file).examples[:4], wordpiece_tokenizer, FeatureConfig(64, 16, 16),
                              with_labels=True)
    batch = {k: torch.from_numpy(v) for k, v in feats.batch(range(4), labels=True).items()}
    assert (batch["attention_mask"] == 0).any()
    stages = {"two-stage": ["intermediate", "prediction"], "joint": ["joint"], "prediction": ["prediction"]}[config.schedule]
    seen = set()
    for stage in stages:
        targets = teacher_targets(teacher, batch, stage, lmap, config.attention_loss != "none", TASKS["qa"])
        losses = objective(batch, stage, targets)
        seen |= set(losses) - {"loss"}
        for comp, value in losses.items():
            if comp in ZERO_AT_IDENTITY or (comp == "prediction" and config.prediction_loss != "soft-ce"):
                assert value.item() == pytest.approx(0.0, abs=2e-5), (name, stage, comp)
    on = {c for c in ("attention", "hidden", "embedding", "cosine", "patient", "prediction", "hard")
          if getattr(config, f"{c}_weight") > 0 and not (c == "attention" and config.attention_loss == "none")}
    assert seen == on, name  # exactly the preset's components are computed
    # once the student differs, every component is non-zero and gradients reach only the student
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.05 * torch.randn_like(p))
    for stage in stages:
        targets = teacher_targets(teacher, batch, stage, lmap, config.attention_loss != "none", TASKS["qa"])
        losses = objective(batch, stage, targets)
        assert all(v.item() > 1e-6 for v in losses.values()), (name, stage, losses)
        objective.zero_grad()
        losses["loss"].backward()
        assert all(p.grad is None for p in teacher.parameters())
        assert sum(float(p.grad.abs().sum()) for p in student.parameters() if p.grad is not None) > 0


@pytest.fixture(scope="module")
def bert_teacher(tmp_path_factory, wordpiece_tokenizer):
    """A tiny BERT QA teacher with 4 layers (hidden 64, 4 heads)."""
    return tiny.tiny_qa_model(tmp_path_factory.mktemp("st") / "teacher", wordpiece_tokenizer, "bert", layers=4, seed=5)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_every_strategy_runs_end_to_end_on_qa(tmp_path, name, bert_teacher, squad_file):
    student = {"tinybert": ["--student", "small.json"], "distilbert": [], "pkd-skip": [], "pkd-last": [],
               "bilstm": [], "shared-projection": []}[name]
    (tmp_path / "small.json").write_text(json.dumps({"layers": 2, "hidden": 32, "heads": 2, "intermediate": 64}))
    (tmp_path / "half.json").write_text(json.dumps({"layers": 2}))
    if name in ("distilbert", "pkd-skip", "pkd-last"):
        student = ["--student", str(tmp_path / "half.json")]
    student = [str(tmp_path / s) if s.endswith(".json") and "/" not in s else s for s in student]
    out = tmp_path / "student"
    res = CliRunner().invoke(main, ["distill", str(bert_teacher), "--strategy", name, "--train", str(squad_file),
                                    "--dev", str(squad_file), "--max-dev-examples", "4", "--max-train-examples", "12",
                                    "--epochs", "2", "-o", str(out)] + student + SMALL)
    assert res.exit_code == 0, res.output + repr(res.exception)
    report = json.loads((out / "distill_report.json").read_text())
    assert report["config"]["strategy"] == name and report["task"] == "qa"
    records = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    logged = set().union(*records) - {"step", "epoch", "stage", "loss", "grad_norm", "lr"}
    preset = STRATEGIES[name]
    assert logged == {c for c in ("attention", "hidden", "embedding", "cosine", "patient", "prediction", "hard")
                      if getattr(preset, f"{c}_weight") > 0 and not (c == "attention" and preset.attention_loss == "none")}
    if name == "bilstm":
        assert report["student"]["model_type"] == "kdtool-bilstm" and report["student"]["embedding_init"].startswith("teacher")
    if name in ("distilbert", "pkd-skip", "pkd-last"):
        assert report["student"]["copied_tensors"] > 0 and report["student"]["layers"] == 2
    if name == "shared-projection":
        assert report["student"]["hidden"] == 32 and report["student"]["layers"] == 4
    if name.startswith("pkd"):
        assert report["layer_map"] == ({"0": 0, "1": 2} if name == "pkd-skip" else {"0": 0, "1": 3})


def test_pair_classification_end_to_end(tmp_path, bert_dir, squad_file):
    """Teacher fine-tuned from a bare encoder on derived pairs, a BiLSTM distilled from it, both validated."""
    from transformers import AutoModel, AutoTokenizer

    pairs = tmp_path / "pairs.jsonl"
    assert CliRunner().invoke(main, ["derive-pairs", str(squad_file), "-o", str(pairs), "--negatives", "2"]).exit_code == 0
    encoder = tmp_path / "encoder"
    AutoModel.from_pretrained(bert_dir).save_pretrained(encoder)
    AutoTokenizer.from_pretrained(bert_dir).save_pretrained(encoder)
    common = ["--task", "pair-classification", "--train", str(pairs), "--dev", str(pairs), "--max-length", "48",
              "--max-train-examples", "96", "--max-dev-examples", "32", "--batch-size", "16", "--lr", "2e-3",
              "--no-progress"]
    res = CliRunner().invoke(main, ["finetune", str(encoder), "-o", str(tmp_path / "teacher"), "--epochs", "2"] + common)
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "accuracy" in res.output
    teacher_report = json.loads((tmp_path / "teacher" / "finetune_report.json").read_text())
    assert teacher_report["task"] == "pair-classification" and set(teacher_report["best"]) >= {"accuracy", "f1"}
    records = [json.loads(x) for x in (tmp_path / "teacher" / "train_log.jsonl").read_text().splitlines()]
    assert records[-1]["hard"] < records[0]["hard"]  # it learns
    res = CliRunner().invoke(main, ["distill", str(tmp_path / "teacher"), "--strategy", "bilstm", "-o",
                                    str(tmp_path / "bilstm"), "--epochs", "2"] + common)
    assert res.exit_code == 0, res.output + repr(res.exception)
    report = json.loads((tmp_path / "bilstm" / "distill_report.json").read_text())
    assert report["student"]["model_type"] == "kdtool-bilstm" and report["stages"] == ["prediction", "prediction"]
    res = CliRunner().invoke(main, ["validate", str(tmp_path / "teacher"), str(tmp_path / "bilstm"), "--data", str(pairs),
                                    "--max-length", "48", "--limit", "32", "--json", str(tmp_path / "v.json")])
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "v.json").read_text())
    assert result["task"] == "pair-classification"
    assert result["models"][0]["accuracy"] == pytest.approx(teacher_report["best"]["accuracy"])
