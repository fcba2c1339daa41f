"""A loss is one function and one registry entry (kdtool.losses.register_loss): the config's weight
field and its check, the strategies' default, the stage components, the objective's weight and term,
and the ``--<name>-weight`` option of ``kdtool distill`` (and ``kdtool prune``) all follow from it."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields

import pytest

from kdtool.losses import LOSSES, STAGES, register_loss, stage_losses

# registered in a fresh interpreter before the config, strategies and CLI are imported, as a plugin would
NEW_LOSS = r'''
import json, torch
from kdtool.losses import register_loss

@register_loss("logit_l1", stages=("prediction", "joint"), about="the L1 distance of the logits",
               needs=("teacher_outputs",))
def logit_l1(x):
    return sum((s - t).abs().mean() for s, t in zip(x.outputs, x.targets["outputs"], strict=True))

from transformers import RobertaConfig, RobertaForQuestionAnswering
from kdtool.cli.distill import command as distill_command
from kdtool.cli.prune import command as prune_command
from kdtool.distill.config import DistillConfig, strategy_fields
from kdtool.distill.objective import Objective
from kdtool.errors import InputError
from kdtool.strategies import STRATEGIES
from kdtool.tasks import TASKS

out = {"strategy_fields": list(strategy_fields()), "tinybert_default": STRATEGIES["tinybert"].logit_l1_weight}
base = dict(model="-", train_file="-", output="-", schedule="prediction", hard_weight=0.0)
out["config_default"] = DistillConfig(**base).logit_l1_weight
config = DistillConfig(**base, logit_l1_weight=0.5)
try:
    DistillConfig(**base, logit_l1_weight=-1.0)
except InputError as e:
    out["negative"] = str(e)
torch.manual_seed(0)
student = RobertaForQuestionAnswering(RobertaConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1,
                                                    num_attention_heads=2, intermediate_size=32,
                                                    max_position_embeddings=20))
objective = Objective(student, config=config, task=TASKS["qa"])
out["weights"] = objective.weights
out["components"] = objective.components("prediction")
batch = {"input_ids": torch.randint(3, 40, (2, 8)), "attention_mask": torch.ones(2, 8, dtype=torch.long),
         "start_positions": torch.tensor([1, 2]), "end_positions": torch.tensor([3, 4])}
targets = {"outputs": (torch.randn(2, 8), torch.randn(2, 8))}
losses = objective(batch, "prediction", targets)
out["terms"] = sorted(losses)
out["loss_is_the_weighted_sum"] = abs(float(losses["loss"] - losses["prediction"] - 0.5 * losses["logit_l1"])) < 1e-6
out["distill_options"] = [o for p in distill_command.params for o in p.opts]
out["prune_options"] = [o for p in prune_command.params for o in p.opts]
print(json.dumps(out))
'''


def test_a_registered_loss_flows_through_config_objective_and_cli():
    res = subprocess.run([sys.executable, "-c", NEW_LOSS], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert "logit_l1_weight" in out["strategy_fields"]
    assert out["tinybert_default"] == 0.0 and out["config_default"] == 0.0  # the entry's default, via the preset
    assert out["negative"] == "logit-l1-weight must not be negative"
    assert out["weights"]["logit_l1"] == 0.5
    assert out["components"] == ["prediction", "logit_l1"]  # its stage, after the built-in ones
    assert out["terms"] == ["logit_l1", "loss", "prediction"] and out["loss_is_the_weighted_sum"]
    assert "--logit-l1-weight" in out["distill_options"] and "--logit-l1-weight" in out["prune_options"]


def test_the_builtin_registry_gives_the_stage_components_of_the_schedules():
    assert {s: set(stage_losses(s)) for s in STAGES} == {
        "finetune": {"hard"},
        "intermediate": {"attention", "hidden", "embedding", "cosine", "patient"},
        "prediction": {"prediction", "hard"},
        "joint": {"attention", "hidden", "embedding", "cosine", "patient", "prediction", "hard"},
    }


def test_every_loss_has_a_config_field_a_strategy_default_and_a_distill_option():
    from kdtool.cli.distill import command
    from kdtool.distill.config import DistillConfig, strategy_fields
    from kdtool.strategies import Strategy

    options = {o for p in command.params for o in p.opts}
    config_fields = {f.name for f in fields(DistillConfig)}
    strategy = {f.name: f.default for f in fields(Strategy)}
    for spec in LOSSES.values():
        assert spec.weight_field in config_fields and spec.weight_field in strategy_fields()
        assert strategy[spec.weight_field] == spec.default
        assert spec.option in options


def test_a_bad_registration_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_loss("hidden", stages=("intermediate",), about="x")
    with pytest.raises(ValueError, match="unknown stage"):
        register_loss("new_one", stages=("warmup",), about="x")
    with pytest.raises(ValueError, match="unknown input"):
        register_loss("new_one", stages=("joint",), about="x", needs=("attentions",))
    assert "new_one" not in LOSSES
