"""Layer mapping, head pairing, the student registry and initialisation from teacher layers."""

from __future__ import annotations

import json

import pytest
import torch

from kdtool.distill import PRESETS, build_student, default_layer_map, head_groups, layer_map
from kdtool.distill.objective import layer_qk
from kdtool.errors import InputError


def test_default_layer_map_is_k_times_t_over_s():
    assert default_layer_map(6, 24) == {0: 0, 1: 4, 2: 8, 3: 12, 4: 16, 5: 20, 6: 24}
    assert default_layer_map(4, 12) == {0: 0, 1: 3, 2: 6, 3: 9, 4: 12}
    assert default_layer_map(2, 6) == {0: 0, 1: 3, 2: 6}


def test_explicit_layer_map_and_its_errors():
    assert layer_map(3, 12, "1:2,3:12") == {0: 0, 1: 2, 3: 12}
    for bad in ("1-2", "4:1", "1:13", "0:3"):
        with pytest.raises(InputError):
            layer_map(3, 12, bad)
    with pytest.raises(InputError, match="more layers"):
        layer_map(8, 4)


def test_head_groups():
    assert head_groups(16, 16) == 1
    assert head_groups(4, 16) == 4
    with pytest.raises(InputError, match="cannot pair"):
        head_groups(12, 16)


def test_paper_student_preset_has_the_papers_shape_and_size(tmp_path):
    from transformers import RobertaConfig

    RobertaConfig(vocab_size=50262, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                  intermediate_size=4096, max_position_embeddings=514, type_vocab_size=1).save_pretrained(tmp_path)
    model, desc = build_student("tinyroberta-es", str(tmp_path))
    c = model.config
    shape = (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size, c.vocab_size)
    assert shape == (6, 512, 16, 3072, 50262)
    assert 50e6 < sum(p.numel() for p in model.parameters()) < 53e6  # the paper: 51.4M
    assert model.config._attn_implementation == "sdpa" and desc["kind"] == "preset"
    assert all(s.hidden % s.heads == 0 for s in PRESETS.values())


def test_json_student_and_teacher_layer_init_copies_mapped_layers(tmp_path, roberta_dir):
    import sys
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    import tiny
    from transformers import AutoTokenizer

    teacher_dir = tiny.tiny_qa_model(tmp_path / "t4", AutoTokenizer.from_pretrained(roberta_dir), "roberta", layers=4)
    from kdtool.models import load_qa_model

    teacher = load_qa_model(teacher_dir)
    cfg = tmp_path / "s.json"
    cfg.write_text(json.dumps({"layers": 2}))
    student, desc = build_student(str(cfg), str(teacher_dir), init="teacher-layers")
    s, t = student.state_dict(), teacher.state_dict()
    for i, j in ((0, 1), (1, 3)):  # student layer k <- teacher layer 2k (1-based)
        assert torch.equal(s[f"roberta.encoder.layer.{i}.attention.self.query.weight"],
                           t[f"roberta.encoder.layer.{j}.attention.self.query.weight"])
    assert torch.equal(s["roberta.embeddings.word_embeddings.weight"], t["roberta.embeddings.word_embeddings.weight"])
    assert torch.equal(s["qa_outputs.weight"], t["qa_outputs.weight"])
    assert desc["copied_tensors"] == len(s)
    narrow = tmp_path / "n.json"
    narrow.write_text(json.dumps({"layers": 2, "hidden": 32, "heads": 2}))
    with pytest.raises(InputError, match="layer shape"):
        build_student(str(narrow), str(teacher_dir), init="teacher-layers")


def test_student_directory_with_another_tokenizer_is_refused(roberta_dir, bert_dir):
    with pytest.raises(InputError, match="different tokenizer"):
        build_student(str(bert_dir), str(roberta_dir))
    with pytest.raises(InputError, match="unknown student"):
        build_student("no-such-preset", str(roberta_dir))


@pytest.mark.parametrize("fixture", ["roberta_dir", "bert_dir"])
def test_recomputed_qk_reproduce_the_models_own_attention(request, fixture):
    """Q/K from hidden_states[k-1] through layer k's projections give exactly the eager attention maps."""
    from kdtool.models import load_qa_model

    model = load_qa_model(request.getfixturevalue(fixture), attn_implementation="eager").eval()
    ids = torch.randint(5, 100, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 7:] = 0
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
        for k in (1, 2):
            q, kk = layer_qk(model, k, out.hidden_states[k - 1])
            s = q @ kk.transpose(-1, -2) / q.shape[-1] ** 0.5
            probs = torch.softmax(s.masked_fill(mask[:, None, None, :] == 0, float("-inf")), -1)
            torch.testing.assert_close(probs[0], out.attentions[k - 1][0], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(probs[1, :, :7], out.attentions[k - 1][1, :, :7], rtol=1e-4, atol=1e-5)


def test_every_architecture_named_in_the_presets_has_a_builder():
    from kdtool.distill.presets import ARCHITECTURES
    from kdtool.distill.students import BUILDERS

    assert set(BUILDERS) == set(ARCHITECTURES)
