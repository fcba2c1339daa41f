"""Bad input to ``kdtool distill`` / ``finetune``: one line, non-zero exit, no traceback, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tiny
from click.testing import CliRunner

from kdtool.cli import main

SMALL = ["--max-length", "64", "--doc-stride", "16", "--max-query-length", "16", "--batch-size", "8", "--no-progress"]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory, bpe_tokenizer, roberta_dir):
    root = tmp_path_factory.mktemp("bad")
    from transformers import AutoModel

    encoder = root / "encoder"  # a RobertaModel: no QA head
    AutoModel.from_pretrained(roberta_dir).save_pretrained(encoder)
    bpe_tokenizer.save_pretrained(encoder)
    student = root / "student.json"
    student.write_text(json.dumps({"layers": 1, "hidden": 48, "heads": 3, "intermediate": 64}))
    empty = tiny.write_json(root / "empty.json", {"version": "1.1", "data": [{"title": "a", "paragraphs": [
        {"context": "Hola mundo.", "qas": [{"id": "1", "question": "¿Qué?", "answers": [{"text": "", "answer_start": 0}]}]}]}]})
    return {"root": root, "encoder": encoder, "student": student, "empty": empty}


def fails(args, out: Path, match: str):
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error:") and match in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert not out.exists() and not Path(f"{out}.work").exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]
    return lines[0]


def test_teacher_without_qa_head(tmp_path, dirs, squad_file):
    out = tmp_path / "o"
    fails(["distill", str(dirs["encoder"]), "--student", "micro-2l-128", "--train", str(squad_file), "-o", str(out)] + SMALL,
          out, "not a question-answering model")


def test_unknown_preset(tmp_path, roberta_dir, squad_file):
    out = tmp_path / "o"
    fails(["distill", str(roberta_dir), "--student", "tiny-nonexistent", "--train", str(squad_file), "-o", str(out)] + SMALL,
          out, "unknown student 'tiny-nonexistent'")


def test_unpairable_heads(tmp_path, roberta_dir, dirs, squad_file):
    out = tmp_path / "o"  # teacher 4 heads, student 3
    fails(["distill", str(roberta_dir), "--student", str(dirs["student"]), "--train", str(squad_file), "-o", str(out)] + SMALL,
          out, "cannot pair attention heads")


def test_dataset_without_usable_examples(tmp_path, roberta_dir, dirs):
    out = tmp_path / "o"
    fails(["finetune", str(roberta_dir), "--train", str(dirs["empty"]), "-o", str(out)] + SMALL, out, "no usable question")


def test_resume_with_a_different_configuration(tmp_path, roberta_dir, squad_file):
    out = tmp_path / "o"
    base = ["finetune", str(roberta_dir), "--train", str(squad_file), "-o", str(out), "--max-train-examples", "16",
            "--stop-after", "1"] + SMALL
    result = CliRunner().invoke(main, base)
    assert result.exit_code == 0 and "stopped after step 1" in result.output
    work = Path(f"{out}.work")
    before = sorted(p.name for p in work.rglob("*"))
    line = fails_keep_work(base + ["--resume", "--lr", "1e-3"], out)
    assert "different configuration" in line and "lr" in line
    assert sorted(p.name for p in work.rglob("*")) == before
    line = fails_keep_work(base, out)  # neither --resume nor --overwrite
    assert "--resume" in line


def fails_keep_work(args, out):
    result = CliRunner().invoke(main, args)
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code != 0 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert not out.exists()
    return lines[0]


def test_cpu_refuses_half_precision(tmp_path, roberta_dir, squad_file):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    out = tmp_path / "o"
    fails(["finetune", str(roberta_dir), "--train", str(squad_file), "-o", str(out), "--precision", "fp16"] + SMALL,
          out, "needs a CUDA GPU")


def test_cpu_bf16_only_where_the_cpu_has_it(tmp_path, roberta_dir, squad_file):
    """bf16 autocast on CPU trains where the CPU computes bf16 natively, and is one clear line elsewhere."""
    import torch

    from kdtool.distill.runtime import cpu_has_bf16

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    out = tmp_path / "o"
    args = ["finetune", str(roberta_dir), "--train", str(squad_file), "-o", str(out), "--precision", "bf16"] + SMALL
    if not cpu_has_bf16():
        fails(args, out, "native bf16")
        return
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "finetune_report.json").read_text())
    assert report["config"]["precision"] == "bf16"
    from safetensors.torch import load_file

    weights = load_file(str(out / "model.safetensors"))
    assert all(t.dtype == torch.float32 for t in weights.values())  # autocast: the saved weights stay fp32
