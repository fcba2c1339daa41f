"""The redo-by-hand command lines round-trip: a config -> its kdtool command line -> the real click command's config.

Each test builds a config with a non-default value in every field (two configs where one value rules
out another, e.g. --fast-gelu needs fusion), writes its command with kdtool.recipes.commands, runs
that line through the real click command with the library call replaced by a catcher, and compares
the config the command built with the original. A field that no command-line option sets must be
declared recipe-only in the spec, and a config field the spec does not place at all fails here.
"""

import dataclasses
import shlex
from pathlib import Path

import pytest

from kdtool.recipes.commands import (
    EXPORT,
    PROFILE,
    PRUNE,
    SPLIT,
    VALIDATE,
    command_line,
    flat_fields,
    training_spec,
    unplaced_fields,
)


class Caught(Exception):
    def __init__(self, config):
        super().__init__("caught")
        self.config = config


def catch(monkeypatch, module, name):
    def fake(config, *args, **kwargs):
        raise Caught(config)

    monkeypatch.setattr(module, name, fake)


def parse(command, line: str):
    """The config the click ``command`` builds from ``line`` (a ``kdtool NAME ...`` line)."""
    args = shlex.split(line, comments=True)
    assert args[0] == "kdtool"
    with pytest.raises(Caught) as caught:
        command.main(args[2:], prog_name="kdtool", standalone_mode=False)
    return caught.value.config


def differing(configs, baseline=None) -> set[str]:
    """The fields in which at least one of ``configs`` differs from the default (or from ``baseline``)."""
    out = set()
    for config in configs:
        base = dict((n, v) for n, v, _ in flat_fields(baseline)) if baseline is not None else None
        for name, value, default in flat_fields(config):
            if value != (base[name] if base is not None else default):
                out.add(name)
    return out


def all_fields(cls) -> set[str]:
    """Every field of ``cls``; a nested config's fields as ``outer.inner``."""
    names = set()
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            names |= {f"{f.name}.{n}" for n, _, _ in flat_fields(default)}
        else:
            names.add(f.name)
    return names


# ---------------------------------------------------------------------------------------------- export


def test_export_command_round_trips_every_field(tmp_path, monkeypatch):
    import kdtool.export.pipeline
    from kdtool.cli.export import command
    from kdtool.export.config import ExportConfig

    catch(monkeypatch, kdtool.export.pipeline, "export_model")
    common = dict(model_dir=tmp_path / "student dir", output=tmp_path / "bundle", calibration_samples=7, opset=17,
                  max_seq_length=64, profile="x86-avx2", trt=True, per_channel=False, reduce_range=True,
                  overwrite=True, trust_remote_code=True)
    configs = [
        ExportConfig(**common, precision="int8-static", calibration_data=tmp_path / "cal.json",
                     calibration_method="entropy", fast_gelu=True),
        ExportConfig(**common, precision="fp16", fuse=False),
    ]
    assert unplaced_fields(EXPORT, ExportConfig) == []
    assert differing(configs) == all_fields(ExportConfig) - EXPORT.recipe_only
    for config in configs:
        assert parse(command, command_line(EXPORT, config)) == config


def test_export_command_names_what_only_a_recipe_sets(tmp_path):
    from kdtool.export.config import ExportConfig

    line = command_line(EXPORT, ExportConfig(model_dir=tmp_path / "s", output=tmp_path / "b", parity_samples=32))
    assert line.endswith("# recipe only: parity_samples=32")
    assert "--reduce-range" in command_line(EXPORT, ExportConfig(model_dir="s", output="b", reduce_range=True))


# ---------------------------------------------------------------------------------------------- validate


def test_validate_command_round_trips_every_field(tmp_path, monkeypatch):
    import kdtool.validate
    from kdtool.cli.validate import command
    from kdtool.data import FeatureConfig
    from kdtool.validate import ValidateConfig

    catch(monkeypatch, kdtool.validate, "validate")
    config = ValidateConfig(models=(str(tmp_path / "student"), str(tmp_path / "bundle int8")), data=str(tmp_path / "dev.json"),
                            lang="en", max_f1_drop=1.5, limit=10, batch_size=4,
                            features=FeatureConfig(max_length=256, doc_stride=64), n_best=5, max_answer_length=12,
                            null_score_diff_threshold=0.5, device="cpu", threads=2, trust_remote_code=True, task="qa",
                            require_signature=str(tmp_path / "key.pub"), self_test=False, strict=True)
    assert unplaced_fields(VALIDATE, ValidateConfig) == []
    assert differing([config]) == all_fields(ValidateConfig) - VALIDATE.recipe_only
    assert parse(command, command_line(VALIDATE, config)) == config
    default = ValidateConfig(models=("a",), data="d.json")  # the command's defaults are the config's
    assert parse(command, command_line(VALIDATE, default)) == default


# ---------------------------------------------------------------------------------------------- profile


def test_profile_command_round_trips_every_field(tmp_path, monkeypatch):
    import kdtool.profiles.profiler
    from kdtool.cli.profile import command
    from kdtool.profiles.profiler import ProfileConfig

    catch(monkeypatch, kdtool.profiles.profiler, "profile_models")
    config = ProfileConfig(models=[str(tmp_path / "teacher"), str(tmp_path / "student")], profile="x86-avx2",
                           seq_lengths=[64, 128], batch_sizes=[1, 2], data=str(tmp_path / "dev.json"), data_limit=7,
                           runs=3, warmup=2, threads=2, device="cpu", trust_remote_code=True,
                           torch_variants=["fp16:sdpa", "bf16:eager"], require_signature=str(tmp_path / "k.pub"))
    assert unplaced_fields(PROFILE, ProfileConfig) == []
    assert differing([config]) == all_fields(ProfileConfig) - PROFILE.recipe_only
    assert parse(command, command_line(PROFILE, config)) == config
    default = ProfileConfig(models=["a"])
    assert parse(command, command_line(PROFILE, default)) == default


# ---------------------------------------------------------------------------------------------- split


def test_split_command_round_trips_every_field(tmp_path, monkeypatch):
    import kdtool.data.split
    from kdtool.cli.split import command
    from kdtool.data.split import SplitConfig

    catch(monkeypatch, kdtool.data.split, "split_file")
    config = SplitConfig(str(tmp_path / "pool.json"), str(tmp_path / "t.json"), str(tmp_path / "d.json"), 0.3, 5)
    assert unplaced_fields(SPLIT, SplitConfig) == []
    assert parse(command, command_line(SPLIT, config)) == config


# ---------------------------------------------------------------------------------------------- finetune and distill


def test_finetune_and_distill_commands_round_trip_every_field(tmp_path, monkeypatch):
    import kdtool.distill
    from kdtool.cli.distill import command as distill_command
    from kdtool.cli.finetune import command as finetune_command
    from kdtool.distill.config import DistillConfig, TrainConfig

    catch(monkeypatch, kdtool.distill, "finetune")
    catch(monkeypatch, kdtool.distill, "distill")
    common = dict(train_file=str(tmp_path / "train.json"), output=str(tmp_path / "out"), dev_file=str(tmp_path / "dev.json"),
                  lang="en", max_length=128, doc_stride=32, max_query_length=16, max_train_examples=5,
                  max_dev_examples=3, epochs=4, batch_size=8, grad_accum=2, lr=1e-4, weight_decay=0.02, warmup=0.2,
                  max_grad_norm=0.5, dropout=0.1, precision="bf16", seed=1, save_every=10, eval_batch_size=8,
                  work_dir=str(tmp_path / "work"), resume=True, overwrite=True, stop_after=3,
                  qat_calibration_windows=7)
    finetune = TrainConfig(model=str(tmp_path / "base model"), task="pair-classification", student="tiny.json",
                           student_init="teacher-layers", **common)
    spec = training_spec("finetune", TrainConfig)
    assert unplaced_fields(spec, TrainConfig) == []
    assert parse(finetune_command, command_line(spec, finetune)) == finetune

    distill = DistillConfig(model=str(tmp_path / "teacher"), strategy="distilbert", student="tiny.json",
                            student_init="teacher-bottom", schedule="joint", intermediate_epochs=1,
                            attention_loss="probs", layer_map="1:2", projection="per-layer", prediction_loss="mse",
                            temperature=3.0, attention_weight=0.5, hidden_weight=0.25, embedding_weight=0.125,
                            prediction_weight=2.0, hard_weight=0.75, cosine_weight=0.3, patient_weight=0.2,
                            cache_teacher_logits=False, qat=True, task="qa", **common)
    spec = training_spec("distill", DistillConfig)
    assert unplaced_fields(spec, DistillConfig) == []
    baseline = DistillConfig(model="t", train_file="t.json", output="o")
    assert differing([distill], baseline) | {"task"} == all_fields(DistillConfig)  # task: the finetune run's
    assert parse(distill_command, command_line(spec, distill)) == distill


# ---------------------------------------------------------------------------------------------- prune


def test_prune_command_round_trips_every_field(tmp_path, monkeypatch):
    import kdtool.prune
    from kdtool.cli.prune import command
    from kdtool.prune.config import PruneConfig

    catch(monkeypatch, kdtool.prune, "prune")
    # no --qat: prune refuses quantization-aware recovery (kdtool.prune.config), and it was the only flag to carry
    recovery = {"lang": "en", "max_length": 128, "epochs": 2, "schedule": "prediction"}
    common = dict(model=str(tmp_path / "student"), output=str(tmp_path / "pruned"),
                  train_file=str(tmp_path / "train.json"), dev_file=str(tmp_path / "dev.json"),
                  teacher=str(tmp_path / "teacher"), task="qa", profile="x86-avx2", seq_len=128,
                  structures=("heads", "ffn"), schedule="iterative", steps=3, importance_examples=16,
                  importance_batch_size=4, ffn_step=8, latency_engine="pytorch", latency_runs=4, recover=False,
                  recovery=recovery, resume=True, overwrite=True, stop_after=2)
    configs = [PruneConfig(**common, target_params="40%"), PruneConfig(**common, target_flops="50%"),
               PruneConfig(**common, target_latency_ms=3.5)]  # one budget at a time
    assert unplaced_fields(PRUNE, PruneConfig) == []
    assert differing(configs) == all_fields(PruneConfig)
    for config in configs:
        parsed = parse(command, command_line(PRUNE, config))
        # the command fills every distill option into recovery; the ones the config set must come back as they were
        assert {k: parsed.recovery[k] for k in recovery} == recovery
        assert dataclasses.replace(parsed, recovery=recovery) == config


def test_recovery_flags_left_false_are_not_written():
    from kdtool.prune.config import PruneConfig

    line = command_line(PRUNE, PruneConfig(model="s", output="p", train_file="t", target_params="40%",
                                           recovery={"qat": False, "epochs": 2}))
    assert "--epochs 2" in line and "qat" not in line


def test_every_path_is_quoted_for_the_shell(tmp_path):
    from kdtool.export.config import ExportConfig

    line = command_line(EXPORT, ExportConfig(model_dir=Path("my student"), output=Path("out dir")))
    assert shlex.split(line)[:3] == ["kdtool", "export", "my student"] and "'out dir'" in line
