"""A pruning unit is one class and one registration (kdtool.prune.units.register_unit): its ``--prune``
name, help and place in the config, its masks and scores, its moves on the pruning path and its slicing
all follow. A new unit, registered in a fresh interpreter as a plugin would be, goes through the whole
``kdtool prune`` command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kdtool.prune.units import UNITS, PruningUnit, default_structures, register_unit

# registered in a fresh interpreter before anything of kdtool.prune runs, as a plugin would
NEW_UNIT = r'''
import copy, json, sys
from dataclasses import replace

import torch
from transformers.pytorch_utils import prune_linear_layer

from kdtool.prune.shapes import encoder_layers
from kdtool.prune.units import Move, PruningUnit, register_unit

BLOCK = 8


@register_unit
class FFNBlocks(PruningUnit):
    """Blocks of 8 consecutive FFN neurons, as many from every layer, each layer its least important."""

    name = "ffn_blocks"
    about = "8 consecutive FFN neurons at a time"
    default = False
    per_layer = True

    def masks(self, gates):
        return [torch.ones(layer.intermediate.dense.out_features // BLOCK) for layer in gates.layers]

    def hooks(self, gates, masks):
        return [layer.intermediate.register_forward_hook(
                    lambda mod, args, out, m=m: out * m.repeat_interleave(BLOCK).to(out.dtype))
                for layer, m in zip(gates.layers, masks)]

    def zero(self, gates, masks, positions):
        for i, blocks in positions.items():
            masks[i][blocks] = 0.0

    def scores(self, grads):
        return [g.tolist() for g in grads]

    def no_scores(self, shape):
        return [[0.0] * (shape.ffn // BLOCK)] * shape.layers

    def start(self, walk):
        s = walk.scores[self.name] if walk.active(self.name) else None
        order = {i: sorted(range(len(s[i])), key=s[i].__getitem__) for i in range(walk.origin.layers)} if s else {}
        return {"order": order, "removed": 0}

    def move(self, walk):
        st = walk.state[self.name]
        if walk.now.ffn - BLOCK < BLOCK:
            return None
        k = st["removed"]
        imp = sum(walk.scores[self.name][i][st["order"][i][k]] for i in walk.alive)
        return Move(imp, walk.saved(replace(walk.now, ffn=walk.now.ffn - BLOCK)), lambda: st.update(removed=k + 1))

    def narrow(self, walk, shape):
        return replace(shape, ffn=shape.ffn - BLOCK * walk.state[self.name]["removed"])

    def removed(self, walk):
        st = walk.state[self.name]
        return {i: st["order"][i][:st["removed"]] for i in range(walk.origin.layers)} if st["removed"] else {}

    def slice(self, model, positions):
        layers = encoder_layers(model)
        for i, blocks in positions.items():
            gone = {b * BLOCK + j for b in blocks for j in range(BLOCK)}
            keep = torch.tensor([j for j in range(layers[i].intermediate.dense.out_features) if j not in gone])
            layers[i].intermediate.dense = prune_linear_layer(layers[i].intermediate.dense, keep, dim=0)
            layers[i].output.dense = prune_linear_layer(layers[i].output.dense, keep, dim=1)
        model.config.intermediate_size = layers[0].intermediate.dense.out_features


from click.testing import CliRunner
from transformers import AutoModelForQuestionAnswering

from kdtool.cli import main
from kdtool.data import FeatureConfig, load_squad, tokenize_examples
from kdtool.models import load_tokenizer
from kdtool.prune.config import PruneConfig
from kdtool.prune.importance import masked, score_units
from kdtool.prune.search import pruning_path
from kdtool.prune.shapes import Shape, base_params
from kdtool.prune.slicing import apply_plan
from kdtool.tasks import TASKS

model_dir, squad, out_dir = sys.argv[1:4]
out = {"config": PruneConfig(model="-", output="-", train_file="-", target_flops="60%",
                             structures="ffn_blocks,heads").structures,
       "default": PruneConfig(model="-", output="-", train_file="-", target_flops="60%").structures,
       "help": CliRunner().invoke(main, ["prune", "--help"]).output}
model = AutoModelForQuestionAnswering.from_pretrained(model_dir).eval()
feats = tokenize_examples(load_squad(squad).examples[:8], load_tokenizer(model_dir), FeatureConfig(96, 32, 32),
                          with_labels=True)
batch = {k: torch.from_numpy(v) for k, v in feats.batch(list(range(len(feats))), length=96, labels=True).items()}
scores = score_units(model, [batch], TASKS["qa"])
out["scores"] = {k: len(v) for k, v in scores.items()}
out["block_scores"] = [len(row) for row in scores["ffn_blocks"]]
path = pruning_path(Shape.of(model), scores, ("ffn_blocks",), seq_len=64, base_params=base_params(model))
out["path_ffn"] = [p.shape.ffn for p in path]
plan = path[3].plan
out["plan"] = plan.to_dict()
x = {"input_ids": batch["input_ids"][:2], "attention_mask": batch["attention_mask"][:2]}
with torch.no_grad():
    with masked(model, **plan.removed):
        want = model(**x).start_logits
    got = apply_plan(copy.deepcopy(model), plan)(**x).start_logits
out["max_diff"] = float((want - got).abs().max())
res = CliRunner().invoke(main, ["prune", model_dir, "-o", out_dir, "--train", squad, "--prune", "ffn_blocks",
                                "--target-flops", "80%", "--seq-len", "64", "--no-recover", "--importance-examples", "8",
                                "--max-length", "96", "--doc-stride", "32", "--no-progress"])
out["cli"] = [res.exit_code, res.output]
print(json.dumps(out))
'''


def test_a_registered_unit_flows_through_config_cli_scores_path_slicing_and_prune(roberta_dir, squad_file, tmp_path):
    out_dir = tmp_path / "pruned"
    res = subprocess.run([sys.executable, "-c", NEW_UNIT, str(roberta_dir), str(squad_file), str(out_dir)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["config"] == ["heads", "ffn_blocks"]  # registration order, after the built-ins
    assert out["default"] == ["heads", "ffn", "layers"]  # default = False keeps it out
    assert "ffn_blocks (8 consecutive FFN neurons at a time)" in " ".join(out["help"].split())
    assert out["scores"] == {"heads": 2, "ffn": 2, "layers": 2, "hidden": 64, "ffn_blocks": 2}
    assert out["block_scores"] == [16, 16]  # 128 neurons per layer, in blocks of 8
    assert out["path_ffn"] == list(range(128, 0, -8))  # one block per layer per move, down to the last block
    assert {k: len(v) for k, v in out["plan"]["ffn_blocks"].items()} == {"0": 3, "1": 3}
    assert out["max_diff"] <= 1e-5  # slicing its blocks equals masking them
    code, output = out["cli"]
    assert code == 0, output
    report = json.loads((out_dir / "prune_report.json").read_text())
    removed = report["steps"][0]["removed"]
    assert removed["ffn_blocks"] and not removed["heads"] and not removed["ffn"]
    assert report["after"]["ffn"] < report["before"]["ffn"] == 128 and report["flops_kept"] <= 0.8
    assert report["after"]["ffn"] % 8 == 0


def test_the_builtin_units_in_their_order_and_the_default():
    assert list(UNITS) == ["heads", "ffn", "layers", "hidden"]
    assert default_structures() == ("heads", "ffn", "layers")


def test_a_unit_name_is_registered_once():
    class Again(PruningUnit):
        name = "heads"

    with pytest.raises(ValueError, match="already registered"):
        register_unit(Again)
    assert type(UNITS["heads"]).__name__ == "Heads"


def test_a_plan_or_a_mask_of_an_unknown_unit_is_refused():
    from kdtool.prune.slicing import Plan

    with pytest.raises(TypeError, match="unknown pruning units"):
        Plan(neurons=[1])
    assert Plan(layers=[1]).heads == {} and Plan(layers=[1]).to_dict()["layers"] == [1]
