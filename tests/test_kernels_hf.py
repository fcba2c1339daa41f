"""The torch-triton attention backend inside Hugging Face encoders and kdtool's engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from kernel_testing import HAS_TRITON, TRITON_DEVICE, needs_triton_device, run_test_file_under_interpreter
from transformers import AutoModelForQuestionAnswering, BertConfig, RobertaConfig

from kdtool.kernels import hf_attention
from kdtool.kernels.hf_attention import padding_key_mask, register_triton_attention, triton_attention_forward

CONFIGS = {
    "bert": lambda: BertConfig(vocab_size=99, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=128, max_position_embeddings=64),
    "roberta": lambda: RobertaConfig(vocab_size=99, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=128, max_position_embeddings=66, pad_token_id=1),
}


@pytest.fixture
def adapter_backend():
    """Set the adapter's fused_attention backend for one test and restore it afterwards."""
    previous = hf_attention.settings["backend"]
    yield lambda name: register_triton_attention(name)
    register_triton_attention(previous)


def load_pair(kind, tmp_path, device="cpu"):
    torch.manual_seed(0)
    model = AutoModelForQuestionAnswering.from_config(CONFIGS[kind]())
    model.save_pretrained(tmp_path / kind)
    return [AutoModelForQuestionAnswering.from_pretrained(tmp_path / kind, attn_implementation=impl).eval().to(device)
            for impl in ("sdpa", "torch-triton")]


def padded_batch(device="cpu"):
    gen = torch.Generator().manual_seed(3)
    input_ids = torch.randint(5, 99, (3, 21), generator=gen)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 12:] = 0
    attention_mask[2, 5:] = 0
    input_ids[attention_mask == 0] = 1
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}


def assert_same_logits(model_a, model_b, batch, atol):
    with torch.no_grad():
        a, b = model_a(**batch), model_b(**batch)
    real = batch["attention_mask"].bool()
    for name in ("start_logits", "end_logits"):
        diff = (getattr(a, name) - getattr(b, name)).abs()[real].max().item()
        assert diff <= atol, f"{name}: max difference {diff:.3g}"
    assert a.start_logits.abs().max() > 0


@pytest.mark.parametrize("kind", CONFIGS)
def test_torch_triton_model_gives_sdpa_logits_through_the_reference(kind, tmp_path):
    sdpa_model, triton_model = load_pair(kind, tmp_path)
    self_attention = getattr(triton_model, kind).encoder.layer[0].attention.self
    assert type(self_attention).__name__ == f"{'Bert' if kind == 'bert' else 'Roberta'}TritonSelfAttention"
    assert triton_model.config._attn_implementation == "torch-triton"
    assert_same_logits(sdpa_model, triton_model, padded_batch(), atol=1e-5)


def test_padding_key_mask_reads_hf_masks_and_refuses_others():
    additive = torch.zeros(2, 1, 1, 5)
    additive[1, ..., 3:] = torch.finfo(torch.float32).min
    usable, key_mask = padding_key_mask(additive, 2, 5)
    assert usable and key_mask.tolist() == [[True] * 5, [True, True, True, False, False]]
    causal = torch.tril(torch.ones(5, 5, dtype=torch.bool))[None, None].expand(2, 1, 5, 5)
    assert padding_key_mask(causal, 2, 5) == (False, None)
    per_row_padding = additive.expand(2, 1, 5, 5)
    assert padding_key_mask(per_row_padding, 2, 5)[0]
    assert padding_key_mask(None, 2, 5) == (True, None)


def test_interface_function_matches_sdpa_and_falls_back_for_causal():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    module = torch.nn.Module()
    module.is_causal = False
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 9, 16, generator=gen) for _ in range(3))
    mask = torch.ones(2, 1, 9, 9, dtype=torch.bool)
    mask[1, ..., 6:] = False
    ours, _ = triton_attention_forward(module, q, k, v, mask)
    expected, _ = sdpa_attention_forward(module, q, k, v, mask)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-6)
    causal_ours, _ = triton_attention_forward(module, q, k, v, None, is_causal=True)
    causal_expected, _ = sdpa_attention_forward(module, q, k, v, None, is_causal=True)
    torch.testing.assert_close(causal_ours, causal_expected)
    assert not torch.allclose(causal_ours, ours)


def test_engine_runs_with_torch_triton(bert_dir):
    from kdtool.engines.pytorch import TorchQAEngine

    batch = {"input_ids": np.array([[2, 10, 11, 12, 3, 0]]), "attention_mask": np.array([[1, 1, 1, 1, 1, 0]]),
             "token_type_ids": np.zeros((1, 6), dtype=np.int64)}
    engine = TorchQAEngine(bert_dir, device="cpu", attn_implementation="torch-triton")
    assert type(engine.model.bert.encoder.layer[0].attention.self).__name__ == "BertTritonSelfAttention"
    start, end = engine.run(batch)
    ref_start, ref_end = TorchQAEngine(bert_dir, device="cpu", attn_implementation="sdpa").run(batch)
    np.testing.assert_allclose(start[:, :5], ref_start[:, :5], atol=1e-5)
    np.testing.assert_allclose(end[:, :5], ref_end[:, :5], atol=1e-5)


@needs_triton_device
@pytest.mark.parametrize("kind", CONFIGS)
def test_triton_kernel_in_model_gives_sdpa_logits(kind, tmp_path, adapter_backend):
    adapter_backend("triton")
    sdpa_model, triton_model = load_pair(kind, tmp_path, TRITON_DEVICE)
    assert_same_logits(sdpa_model, triton_model, padded_batch(TRITON_DEVICE), atol=1e-4)


@pytest.mark.skipif(TRITON_DEVICE is not None or not HAS_TRITON, reason="the kernel cases run directly here")
def test_kernels_under_interpreter():
    print(run_test_file_under_interpreter(__file__, min_passed=2))


def test_under_autograd_the_adapter_uses_differentiable_sdpa(tmp_path):
    sdpa_model, triton_model = load_pair("bert", tmp_path)
    batch = padded_batch()
    out = triton_model(**batch)  # grad enabled: the forward-only kernel must not be used
    out.start_logits.sum().backward()
    grad = triton_model.bert.encoder.layer[0].attention.self.query.weight.grad
    assert grad is not None and grad.abs().max() > 0
    torch.testing.assert_close(out.start_logits.detach(), sdpa_model(**batch).start_logits.detach())
