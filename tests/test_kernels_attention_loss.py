"""attention_prob_mse / attention_prob_kl: the Triton kernels against the plain-PyTorch reference.

The reference itself is checked against independent formulas (HF-style additive-mask softmax,
``F.kl_div``). The kernel cases run on CUDA when present, else in a TRITON_INTERPRET=1 subprocess.
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

from kdtool.kernels import attention_prob_kl, attention_prob_loss_reference, attention_prob_mse

LOSSES = {"mse": attention_prob_mse, "kl": attention_prob_kl}
TILES = {"block_m": 16, "block_n": 16}  # small tiles so that tiny sequences span several, one of them ragged

# name: (batch, heads, seq, student head dim, teacher head dim, key lengths per batch element)
CASES = {
    "ragged-32x64": (2, 2, 37, 32, 64, (37, 21)),
    "fully-padded-row": (3, 2, 20, 32, 64, (20, 0, 9)),
    "block-multiple-16x16": (2, 2, 32, 16, 16, (32, 32)),
    "odd-head-dims": (2, 2, 23, 24, 40, (5, 23)),
}
GRAD_TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 5e-2}
LOSS_TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}


def make_inputs(case: str, dtype=torch.float32, device="cpu", seed=0):
    batch, heads, seq, d_s, d_t, lengths = CASES[case]
    gen = torch.Generator().manual_seed(seed)

    def randn(d, spread):
        return (torch.randn(batch, heads, seq, d, generator=gen) * spread).to(device=device, dtype=dtype)

    key_mask = torch.zeros(batch, seq, dtype=torch.int64)
    for b, length in enumerate(lengths):
        key_mask[b, :length] = 1
    # spread 2 gives peaked and flat rows alike (scores of a few units)
    return randn(d_s, 2.0), randn(d_s, 2.0), randn(d_t, 2.0), randn(d_t, 2.0), key_mask.to(device)


# --- the reference against independent formulas (always run) ------------------------------------

def hf_style_probs(q, k, key_mask):
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5 + (1 - key_mask[:, None, None, :].float()) * -1e9
    return torch.softmax(scores, dim=-1)


@pytest.mark.parametrize("case", ["ragged-32x64", "odd-head-dims"])
def test_reference_mse_is_mse_of_hf_style_maps_over_real_rows(case):
    qs, ks, qt, kt, mask = make_inputs(case)
    diff2 = (hf_style_probs(qs, ks, mask) - hf_style_probs(qt, kt, mask)) ** 2  # [B, H, N, N]
    real_rows = mask.bool()
    expected = torch.stack([diff2[b][:, real_rows[b]].mean() for b in range(len(mask))])
    weights = real_rows.sum(1).float()
    expected = (expected * weights).sum() / weights.sum()
    assert attention_prob_mse(qs, ks, qt, kt, mask, backend="reference").item() == pytest.approx(expected.item(), rel=1e-5)


def test_reference_kl_matches_torch_kl_div_per_real_row():
    qs, ks, qt, kt, mask = make_inputs("ragged-32x64")
    log_ps = torch.log(hf_style_probs(qs, ks, mask).clamp_min(1e-30))
    pt = hf_style_probs(qt, kt, mask)
    per_row = F.kl_div(log_ps, pt, reduction="none").sum(-1)  # [B, H, N]
    expected = per_row.permute(0, 2, 1)[mask.bool()].mean()
    assert attention_prob_kl(qs, ks, qt, kt, mask, backend="reference").item() == pytest.approx(expected.item(), rel=1e-4)


@pytest.mark.parametrize("kind", LOSSES)
def test_identical_maps_give_zero_and_different_maps_do_not(kind):
    qs, ks, qt, kt, mask = make_inputs("block-multiple-16x16")
    assert LOSSES[kind](qs, ks, qs, ks, mask, backend="reference").item() == pytest.approx(0.0, abs=1e-7)
    assert LOSSES[kind](qs, ks, qt, kt, mask, backend="reference").item() > 1e-4


def test_auto_backend_on_cpu_is_the_reference():
    qs, ks, qt, kt, mask = make_inputs("ragged-32x64")
    assert torch.equal(attention_prob_mse(qs, ks, qt, kt, mask), attention_prob_loss_reference("mse", qs, ks, qt, kt, mask))


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_head_count_mismatch_is_a_value_error(backend):
    qs, ks, qt, kt, mask = make_inputs("ragged-32x64")
    with pytest.raises(ValueError, match="heads"):
        attention_prob_mse(qs, ks, qt[:, :1], kt[:, :1], mask, backend=backend)
    with pytest.raises(ValueError, match="key_mask"):
        attention_prob_kl(qs, ks, qt, kt, mask[:, :-1], backend=backend)
    with pytest.raises(ValueError, match="backend"):
        attention_prob_kl(qs, ks, qt, kt, mask, backend="cuda")


@pytest.mark.skipif(not HAS_TRITON or INTERPRETED, reason="checks the error outside the interpreter")
def test_triton_backend_on_cpu_without_interpreter_says_how_to_enable_it():
    qs, ks, qt, kt, mask = make_inputs("ragged-32x64")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        attention_prob_mse(qs, ks, qt, kt, mask, backend="triton")


# --- Triton against the reference (CUDA, or the interpreter subprocess) --------------------------

def loss_and_grads(kind, inputs, backend):
    qs, ks, qt, kt, mask = inputs
    qs, ks = qs.clone().requires_grad_(True), ks.clone().requires_grad_(True)
    tiles = TILES if backend == "triton" else None
    loss = LOSSES[kind](qs, ks, qt, kt, mask, backend=backend, **({"tiles": tiles} if tiles else {}))
    loss.backward()
    return loss.detach(), qs.grad, ks.grad


@needs_triton_device
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kind", LOSSES)
def test_triton_loss_and_gradients_match_reference(kind, case, dtype):
    inputs = make_inputs(case, dtype, TRITON_DEVICE)
    loss, dq, dk = loss_and_grads(kind, inputs, "triton")
    ref_loss, ref_dq, ref_dk = loss_and_grads(kind, inputs, "reference")
    assert loss.dtype == torch.float32 and loss.dim() == 0
    assert_close_to_reference(loss, ref_loss, LOSS_TOLERANCE[dtype], f"{kind} loss")
    assert dq.dtype == dtype and dk.dtype == dtype
    assert_close_to_reference(dq, ref_dq, GRAD_TOLERANCE[dtype], f"{kind} dQ")
    assert_close_to_reference(dk, ref_dk, GRAD_TOLERANCE[dtype], f"{kind} dK")
    assert ref_dq.abs().max() > 0  # the comparison is not between two zero tensors


@needs_triton_device
@pytest.mark.parametrize("kind", LOSSES)
def test_triton_fully_padded_row_is_zero_not_nan(kind):
    qs, ks, qt, kt, mask = make_inputs("fully-padded-row", device=TRITON_DEVICE)
    loss, dq, dk = loss_and_grads(kind, (qs, ks, qt, kt, mask), "triton")
    assert torch.isfinite(loss) and loss > 0
    assert (dq[1] == 0).all() and (dk[1] == 0).all()  # batch element 1 has no real token
    assert (dq[2, :, 9:] == 0).all() and (dk[2, :, 9:] == 0).all()  # padded rows and keys get no gradient
    all_padded = torch.zeros_like(mask)
    loss, dq, dk = loss_and_grads(kind, (qs, ks, qt, kt, all_padded), "triton")
    assert loss.item() == 0.0 and (dq == 0).all() and (dk == 0).all()


@needs_triton_device
def test_triton_accepts_strided_views_and_leaves_teacher_without_gradient():
    qs, ks, qt, kt, mask = make_inputs("ragged-32x64", device=TRITON_DEVICE)
    # [B, N, H, D] memory seen as [B, H, N, D], as HF's .view(...).transpose(1, 2) produces
    qs_t = qs.transpose(1, 2).contiguous().transpose(1, 2).requires_grad_(True)
    teacher_q = qt.clone().requires_grad_(True)
    loss = attention_prob_mse(qs_t, ks, teacher_q, kt, mask, backend="triton", tiles=TILES)
    loss.backward()
    ref = attention_prob_mse(qs, ks, qt, kt, mask, backend="reference")
    assert_close_to_reference(loss.detach(), ref, 1e-5, "strided loss")
    assert teacher_q.grad is None


@needs_triton_device
@pytest.mark.skipif(TRITON_DEVICE != "cuda", reason="autotuned tiles and long sequences: CUDA only")
@pytest.mark.parametrize("kind", LOSSES)
def test_triton_autotuned_at_paper_like_shape(kind):
    gen = torch.Generator().manual_seed(1)
    qs, ks = (torch.randn(2, 4, 384, 32, generator=gen).cuda().half() for _ in range(2))
    qt, kt = (torch.randn(2, 4, 384, 64, generator=gen).cuda().half() for _ in range(2))
    mask = torch.ones(2, 384, dtype=torch.int64, device="cuda")
    mask[1, 300:] = 0
    for backend in ("triton", "reference"):
        q, k = qs.clone().requires_grad_(True), ks.clone().requires_grad_(True)
        loss = LOSSES[kind](q, k, qt, kt, mask, backend=backend)
        loss.backward()
        if backend == "triton":
            got = (loss.detach(), q.grad, k.grad)
        else:
            assert_close_to_reference(got[0], loss.detach(), 2e-3, "loss")
            assert_close_to_reference(got[1], q.grad, 2e-2, "dQ")
            assert_close_to_reference(got[2], k.grad, 2e-2, "dK")


@pytest.mark.skipif(TRITON_DEVICE is not None or not HAS_TRITON, reason="the kernel cases run directly here")
def test_kernels_under_interpreter():
    print(run_test_file_under_interpreter(__file__, min_passed=27))


# --- the real compiler, no GPU needed -------------------------------------------------------------

@needs_compiler
@pytest.mark.parametrize("kernel_name", ["_prob_loss_fwd_kernel", "_prob_loss_dq_kernel", "_prob_loss_dk_kernel"])
@pytest.mark.parametrize("kind,dtype", [(0, "fp16"), (1, "bf16")])
def test_kernels_compile_for_h100(kernel_name, kind, dtype):
    from kdtool.kernels import _attention_loss_triton as module

    types = {name: f"*{dtype}" for name in ("QS", "KS", "QT", "KT", "DQS", "DKS")}
    types.update({name: "*i32" for name in ("MASK", "KLEN")})
    types.update({name: "*fp32" for name in ("ROW_LOSS", "LSE_S", "LSE_T", "DELTA", "COEF")})
    types.update({name: "fp32" for name in ("scale_s_log2", "scale_t_log2", "scale_s")})
    constexprs = dict(KIND=kind, BLOCK_M=64, BLOCK_N=64, DS_PAD=32, DT_PAD=64, PREC_S="tf32", PREC_T="tf32")
    compile_for_sm90(getattr(module, kernel_name), types, constexprs)
