"""fused_attention: the Triton kernel against the plain-PyTorch reference, and the reference against SDPA.

The kernel cases run on CUDA when present, else in a TRITON_INTERPRET=1 subprocess.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from kernel_testing import (
    HAS_TRITON,
    INTERPRETED,
    TRITON_DEVICE,
    assert_close_to_reference,
    compile_for_sm90,
    needs_compiler,
    needs_triton_device,
    run_test_file_under_interpreter,
)

from kdtool.kernels import attention_reference, fused_attention

TILES = {"block_m": 16, "block_n": 16}
# name: (batch, heads, seq, head dim, key lengths per batch element)
CASES = {
    "ragged-d32": (2, 2, 37, 32, (37, 21)),
    "ragged-d64": (2, 2, 40, 64, (13, 40)),
    "fully-padded-row-d32": (3, 2, 20, 32, (20, 0, 9)),
    "block-multiple-d64": (2, 2, 32, 64, (32, 32)),
    "odd-head-dim-20": (2, 2, 19, 20, (19, 7)),
}
TOLERANCE = {torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 3e-2}


def make_inputs(case, dtype=torch.float32, device="cpu", seed=0):
    batch, heads, seq, d, lengths = CASES[case]
    gen = torch.Generator().manual_seed(seed)
    q, k, v = ((torch.randn(batch, heads, seq, d, generator=gen) * 1.5).to(device=device, dtype=dtype) for _ in range(3))
    key_mask = torch.zeros(batch, seq, dtype=torch.bool)
    for b, length in enumerate(lengths):
        key_mask[b, :length] = True
    return q, k, v, key_mask.to(device)


# --- the reference (always run) ---------------------------------------------------------------------

@pytest.mark.parametrize("case", ["ragged-d32", "ragged-d64"])
def test_reference_matches_sdpa_with_a_padding_mask(case):
    q, k, v, mask = make_inputs(case)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
    assert_close_to_reference(attention_reference(q, k, v, mask), expected, 1e-5, "reference vs sdpa")
    assert_close_to_reference(attention_reference(q, k, v), F.scaled_dot_product_attention(q, k, v), 1e-5, "no mask")


def test_reference_fully_padded_row_is_zero():
    q, k, v, mask = make_inputs("fully-padded-row-d32")
    out = attention_reference(q, k, v, mask)
    assert torch.isfinite(out).all() and (out[1] == 0).all() and out[0].abs().max() > 0


def test_auto_backend_on_cpu_is_the_reference_and_errors_are_value_errors():
    q, k, v, mask = make_inputs("ragged-d32")
    assert torch.equal(fused_attention(q, k, v, mask), attention_reference(q, k, v, mask))
    with pytest.raises(ValueError, match="one shape"):
        fused_attention(q, k[..., :16], v, mask)
    with pytest.raises(ValueError, match="key_mask"):
        fused_attention(q, k, v, mask[:1])


@pytest.mark.skipif(not HAS_TRITON or INTERPRETED, reason="checks the error outside the interpreter")
def test_triton_backend_on_cpu_without_interpreter_says_how_to_enable_it():
    q, k, v, mask = make_inputs("ragged-d32")
    with torch.no_grad(), pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        fused_attention(q, k, v, mask, backend="triton")


# --- Triton against the reference ------------------------------------------------------------------

@needs_triton_device
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", CASES)
def test_triton_attention_matches_reference(case, dtype):
    q, k, v, mask = make_inputs(case, dtype, TRITON_DEVICE)
    with torch.no_grad():
        out = fused_attention(q, k, v, mask, backend="triton", tiles=TILES)
    assert out.dtype == dtype and out.shape == q.shape
    assert_close_to_reference(out, attention_reference(q, k, v, mask), TOLERANCE[dtype], case)
    if case.startswith("fully-padded"):
        assert (out[1] == 0).all()


@needs_triton_device
def test_triton_attention_without_mask_with_scale_and_strided_inputs():
    q, k, v, _ = make_inputs("ragged-d64", device=TRITON_DEVICE)
    q_strided = q.transpose(1, 2).contiguous().transpose(1, 2)  # HF's view(...).transpose(1, 2) layout
    with torch.no_grad():
        out = fused_attention(q_strided, k, v, scale=0.3, backend="triton", tiles=TILES)
    assert_close_to_reference(out, attention_reference(q, k, v, scale=0.3), 1e-5, "no mask, scale 0.3")


@needs_triton_device
def test_triton_attention_is_forward_only():
    q, k, v, mask = make_inputs("ragged-d32", device=TRITON_DEVICE)
    q.requires_grad_(True)
    with pytest.raises(ValueError, match="forward-only"):
        fused_attention(q, k, v, mask, backend="triton")
    out = fused_attention(q, k, v, mask)  # auto under autograd: the differentiable reference
    out.sum().backward()
    assert q.grad is not None and q.grad.abs().max() > 0


@needs_triton_device
@pytest.mark.skipif(TRITON_DEVICE != "cuda", reason="autotuned tiles and long sequences: CUDA only")
@pytest.mark.parametrize("head_dim", [32, 64])
def test_triton_attention_autotuned_against_sdpa(head_dim):
    gen = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(4, 16, 384, head_dim, generator=gen).cuda().half() for _ in range(3))
    mask = torch.ones(4, 384, dtype=torch.bool, device="cuda")
    mask[1, 200:] = False
    with torch.no_grad():
        out = fused_attention(q, k, v, mask)
        expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
    assert_close_to_reference(out, expected, 5e-3, "autotuned vs sdpa")


@pytest.mark.skipif(TRITON_DEVICE is not None or not HAS_TRITON, reason="the kernel cases run directly here")
def test_kernels_under_interpreter():
    print(run_test_file_under_interpreter(__file__, min_passed=17))


# --- the real compiler, no GPU needed ----------------------------------------------------------------

@needs_compiler
@pytest.mark.parametrize("dtype,head_dim,precision", [("fp16", 32, "tf32"), ("bf16", 64, "tf32"), ("fp32", 32, "ieee")])
def test_kernel_compiles_for_h100(dtype, head_dim, precision):
    from kdtool.kernels import _attention_triton as module

    types = {name: f"*{dtype}" for name in ("Q", "K", "V", "OUT")}
    types.update(MASK="*i32", KLEN="*i32", scale_log2="fp32")
    compile_for_sm90(module._attention_fwd_kernel, types, dict(BLOCK_M=128, BLOCK_N=64, D_PAD=head_dim, PREC=precision),
                     num_stages=3)
