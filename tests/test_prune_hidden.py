"""Hidden-dimension pruning on tiny real models: dimensions disabled by hand score lowest and go first,
the sliced model equals the masked one (LayerNorms over the kept dimensions) for QA and pair heads of
BERT and RoBERTa and reloads with plain transformers, its parameter count is what the search predicted,
and a pruned model exports with FP32 parity and runs INT8. A model whose width cannot be narrowed is told so."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from click.testing import CliRunner
from test_prune import COMMON, _batches, _qa
from transformers import (
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    BertConfig,
    ElectraConfig,
    ElectraForQuestionAnswering,
    RobertaConfig,
)

from kdtool.cli import main
from kdtool.prune.importance import masked, score_units
from kdtool.prune.search import pruning_path
from kdtool.prune.shapes import Shape, base_params
from kdtool.prune.slicing import Plan, apply_plan
from kdtool.tasks import TASKS

DISABLED = [5, 20, 33]


def test_hidden_dimensions_zeroed_by_hand_score_lowest_and_go_first(roberta_dir, squad_file):
    model = _qa(roberta_dir)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    with torch.no_grad():  # every LayerNorm writes 0 to these dimensions: the residual stream never carries them
        for norm in norms:
            norm.weight[DISABLED] = 0
            norm.bias[DISABLED] = 0
    scores = score_units(model, _batches(roberta_dir, squad_file), TASKS["qa"])
    order = sorted(range(len(scores["hidden"])), key=scores["hidden"].__getitem__)
    assert set(order[:3]) == set(DISABLED)
    assert max(scores["hidden"][d] for d in DISABLED) == 0 < scores["hidden"][order[3]]
    path = pruning_path(Shape.of(model), scores, ("hidden",), seq_len=64, base_params=base_params(model))
    assert set(DISABLED) <= set(path[1].plan.hidden) and len(path[1].plan.hidden) == 16  # one head size
    assert path[1].shape.hidden == 48 and max(path[1].shape.heads) <= 3  # at most 48 // 16 heads per layer


def _pair_model(kind, tokenizer):
    torch.manual_seed(0)
    common = dict(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=96, pad_token_id=tokenizer.pad_token_id, num_labels=3)
    config = RobertaConfig(max_position_embeddings=130, **common) if kind == "roberta" else BertConfig(
        max_position_embeddings=128, **common)
    return AutoModelForSequenceClassification.from_config(config).eval()


@pytest.mark.parametrize("kind", ["roberta-qa", "bert-qa", "roberta-pairs", "bert-pairs"])
def test_hidden_slicing_equals_masking_reloads_and_counts(kind, roberta_dir, bert_dir, bpe_tokenizer, wordpiece_tokenizer,
                                                          tmp_path):
    family, task = kind.split("-")
    if task == "qa":
        model = _qa(roberta_dir if family == "roberta" else bert_dir)
    else:
        model = _pair_model(family, bpe_tokenizer if family == "roberta" else wordpiece_tokenizer)
    x = {"input_ids": torch.randint(5, model.config.vocab_size, (2, 40)), "attention_mask": torch.ones(2, 40, dtype=torch.long)}
    x["attention_mask"][1, 25:] = 0
    ffn = model.config.intermediate_size - 6
    predicted = Shape((3, 2), ffn, 48, 16).params(base_params(model))
    plan = Plan(heads={0: [1], 1: [0, 3]}, ffn={0: [1, 2, 50, 7, 8, 9], 1: [0, 9, 60, 61, 62, 63]},
                hidden=list(range(3, 64, 4)))  # 16 dimensions spread over every head's span
    with torch.no_grad():
        with masked(model, heads=plan.heads, ffn=plan.ffn, hidden=plan.hidden):
            want = model(**x)
        small = apply_plan(copy.deepcopy(model), plan)
        got = small(**x)
    for name in ("start_logits", "end_logits") if task == "qa" else ("logits",):
        assert torch.allclose(getattr(want, name), getattr(got, name), atol=1e-5), name
    assert small.config.hidden_size == 48 and small.config.num_attention_heads == 3
    assert Shape.of(small) == Shape((3, 2), ffn, 48, 16)
    assert sum(p.numel() for p in small.parameters()) == predicted
    small.save_pretrained(tmp_path / "m")
    load = AutoModelForQuestionAnswering if task == "qa" else AutoModelForSequenceClassification
    with torch.no_grad():
        again = load.from_pretrained(tmp_path / "m").eval()(**x)
    name = "start_logits" if task == "qa" else "logits"
    assert torch.equal(getattr(again, name), getattr(got, name))


def test_a_plan_that_keeps_too_many_heads_for_the_width_is_refused(roberta_dir):
    from kdtool.errors import InputError

    with pytest.raises(InputError, match="at most 3 heads"):
        apply_plan(_qa(roberta_dir), Plan(hidden=list(range(16))))


def test_prune_hidden_to_flops_exports_with_parity_and_runs_int8(roberta_dir, squad_file, tmp_path):
    from kdtool.engines import load_engine
    from kdtool.export import ExportConfig, export_model

    out = tmp_path / "pruned"
    res = CliRunner().invoke(main, ["prune", str(roberta_dir), "-o", str(out), "--train", str(squad_file), "--dev",
                                    str(squad_file), "--prune", "hidden", "--target-flops", "70%", "--seq-len", "128",
                                    "--epochs", "1", "--max-train-examples", "16", "--max-dev-examples", "8", "--no-progress",
                                    *COMMON])
    assert res.exit_code == 0, res.output
    report = json.loads((out / "prune_report.json").read_text())
    assert report["flops_kept"] <= 0.70 and report["after"]["hidden"] < report["before"]["hidden"] == 64
    model = _qa(out)
    assert model.config.hidden_size == report["after"]["hidden"] and Shape.of(model).flops(128) == report["after"]["flops"]
    assert sum(p.numel() for p in model.parameters()) == report["after"]["parameters"]
    fp32 = export_model(ExportConfig(out, tmp_path / "b32", precision="fp32", max_seq_length=96))
    manifest = json.loads((fp32 / "manifest.json").read_text())
    assert manifest["parity"]["bundle"]["max_abs_logit_diff"] <= 1e-4
    assert manifest["fusion"].get("Attention") == 2  # the narrower width still fuses
    engine = load_engine(export_model(ExportConfig(out, tmp_path / "b8", precision="int8", max_seq_length=96)), device="cpu")
    batch = _batches(out, squad_file, 1)[0]
    start, end = engine.run({k: batch[k].numpy() for k in engine.input_names})
    assert start.shape == batch["input_ids"].shape and bool(torch.isfinite(torch.from_numpy(end)).all())


def test_only_a_residual_stream_that_starts_at_a_layernorm_can_be_narrowed(roberta_dir, bpe_tokenizer):
    """ELECTRA projects its embeddings up to the hidden width: there is no LayerNorm to narrow, so the
    prune command refuses 'hidden' for it (kdtool's loader does not open ELECTRA today, so this is checked
    on the function the command calls)."""
    from kdtool.prune.shapes import hidden_prunable

    electra = ElectraForQuestionAnswering(ElectraConfig(vocab_size=len(bpe_tokenizer), embedding_size=32, hidden_size=64,
                                                        num_hidden_layers=1, num_attention_heads=4, intermediate_size=96))
    assert not hidden_prunable(electra) and hidden_prunable(_qa(roberta_dir))
