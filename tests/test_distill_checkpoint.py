"""Checkpoints: a rewrite of the step that latest.json names never leaves the run without a checkpoint."""

import json

import pytest
import torch

from kdtool.distill.checkpoint import load_latest, save_checkpoint


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("killed while writing")  # stands in for a crash in the middle of torch.save


def test_rewriting_the_latest_step_replaces_it(tmp_path):
    save_checkpoint(tmp_path, 6, {"w": torch.zeros(2)})
    save_checkpoint(tmp_path, 6, {"w": torch.ones(2)})  # epoch end right after a periodic save
    assert torch.equal(load_latest(tmp_path)["w"], torch.ones(2))
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-00000006"]


def test_a_failed_rewrite_of_the_latest_step_keeps_the_previous_checkpoint(tmp_path):
    save_checkpoint(tmp_path, 6, {"w": torch.zeros(2)})
    with pytest.raises(RuntimeError, match="killed while writing"):
        save_checkpoint(tmp_path, 6, {"w": torch.ones(2), "bad": Unpicklable()})
    assert json.loads((tmp_path / "latest.json").read_text())["checkpoint"] == "step-00000006"
    assert torch.equal(load_latest(tmp_path)["w"], torch.zeros(2))
    assert not any(p.name.endswith(".partial") for p in (tmp_path / "checkpoints").iterdir())


def test_older_checkpoints_go_only_after_the_new_one_is_named(tmp_path):
    save_checkpoint(tmp_path, 3, {"w": torch.zeros(2)})
    with pytest.raises(RuntimeError):
        save_checkpoint(tmp_path, 4, {"bad": Unpicklable()})
    assert torch.equal(load_latest(tmp_path)["w"], torch.zeros(2))
    save_checkpoint(tmp_path, 4, {"w": torch.ones(2)})
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-00000004"]
