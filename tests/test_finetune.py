"""``kdtool finetune``: a bare encoder becomes a QA model; a student trained without a teacher."""

from __future__ import annotations

import json

import torch
from click.testing import CliRunner

from kdtool.cli import main

SMALL = ["--max-length", "64", "--doc-stride", "16", "--max-query-length", "16", "--batch-size", "8",
         "--max-train-examples", "32", "--no-progress"]


def test_finetune_bare_encoder_into_a_qa_model(tmp_path, bert_dir, squad_file):
    from transformers import AutoModel, AutoModelForQuestionAnswering

    encoder = tmp_path / "encoder"
    AutoModel.from_pretrained(bert_dir).save_pretrained(encoder)  # BertModel: no QA head
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(bert_dir).save_pretrained(encoder)
    out = tmp_path / "qa"
    result = CliRunner().invoke(main, ["finetune", str(encoder), "--train", str(squad_file), "--dev", str(squad_file),
                                       "--max-dev-examples", "8", "-o", str(out), "--epochs", "2", "--lr", "2e-3"] + SMALL)
    assert result.exit_code == 0, result.output
    model = AutoModelForQuestionAnswering.from_pretrained(out)
    assert type(model).__name__ == "BertForQuestionAnswering"
    report = json.loads((out / "finetune_report.json").read_text())
    assert report["teacher"] is None and report["stages"] == ["finetune", "finetune"]
    records = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert set(records[0]) >= {"hard", "loss", "lr", "grad_norm"}
    assert sum(r["hard"] for r in records[-2:]) < sum(r["hard"] for r in records[:2])
    before = AutoModel.from_pretrained(encoder).encoder.layer[0].attention.self.query.weight
    assert not torch.equal(model.bert.encoder.layer[0].attention.self.query.weight, before)  # it trained


def test_finetune_student_from_teacher_layers_is_the_no_kd_baseline(tmp_path, roberta_dir, squad_file):
    cfg = tmp_path / "s.json"
    cfg.write_text(json.dumps({"layers": 1}))
    out = tmp_path / "baseline"
    result = CliRunner().invoke(main, ["finetune", str(roberta_dir), "--student", str(cfg), "--student-init",
                                       "teacher-layers", "--train", str(squad_file), "-o", str(out), "--epochs", "1"] + SMALL)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "finetune_report.json").read_text())
    assert report["student"]["layers"] == 1 and report["student"]["kind"] == "json"
    assert report["student"]["copied_tensors"] > 0
