r"""Attention-map distillation losses on post-softmax probabilities, without [seq, seq] maps.

For one (batch b, head h), with student Q_S, K_S (head dim d_S) and teacher Q_T, K_T (head dim
d_T), a key mask m (1 = real token, 0 = padding) and each model's own scale:

    S_S[i,j] = Q_S[i] . K_S[j] / sqrt(d_S)        S_T[i,j] = Q_T[i] . K_T[j] / sqrt(d_T)
    P[i,j]   = m_j exp(S[i,j]) / sum_k m_k exp(S[i,k])      (padded keys get probability 0)

A row i *counts* when m_i = 1 (padded query rows contribute nothing). With R = the number of
counting rows over the whole batch, H heads and N the (padded) sequence length:

    attention_prob_mse = 1 / (H R N) * sum_{b,h} sum_{i counts} sum_j (P_S[i,j] - P_T[i,j])^2
    attention_prob_kl  = 1 / (H R)   * sum_{b,h} sum_{i counts} sum_j P_T[i,j] log(P_T[i,j] / P_S[i,j])

The MSE is the mean over batch x heads x counting rows x seq (the seed paper's ``MSELoss`` on
HF attention maps, restricted to real query rows); the KL is KL(teacher || student) per row,
averaged over batch x heads x counting rows (MiniLM's reduction). A batch element with no real
token has no counting row; if no row counts at all, the loss is 0. Loss values are fp32.

Gradients flow to the student's Q and K only (the teacher is a constant). With
G = dL/dP_S, the softmax backward gives dL/dS_S[i,j] = P_S[i,j] (G[i,j] - sum_k G[i,k] P_S[i,k]):

    MSE:  dL/dS_S[i,j] = 2c P_S[i,j] (P_S[i,j] - P_T[i,j] - delta_i),  delta_i = sum_k P_S[i,k](P_S[i,k] - P_T[i,k])
    KL:   dL/dS_S[i,j] = c (P_S[i,j] - P_T[i,j])                        (rows of P_T sum to 1)
    dQ_S[i] = sum_j dL/dS_S[i,j] K_S[j] / sqrt(d_S),   dK_S[j] = sum_i dL/dS_S[i,j] Q_S[i] / sqrt(d_S)

with c = upstream grad / denominator. The Triton path (``_attention_loss_triton``) streams tiles
of both score matrices: forward pass 1 gets each row's softmax max and sum for both models, pass 2
the loss (and delta); it keeps O(seq) row statistics, never an N x N map. The backward recomputes
the tiles from those statistics in two kernels, one writing dQ (loop over keys) and one writing dK
(loop over queries), so every gradient tile has a single writer and no atomics are needed.

Head counts must match (average teacher heads in groups beforehand when they differ).
"""

from __future__ import annotations

import torch

from kdtool.kernels._triton_runtime import (
    dot_precision,
    kernel_module,
    key_lengths,
    key_mask_int32,
    padded_head_dim,
    resolve_backend,
)

TRITON_MODULE = "kdtool.kernels._attention_loss_triton"


def _check_inputs(student_q, student_k, teacher_q, teacher_k, key_mask):
    for name, t in (("student_q", student_q), ("student_k", student_k), ("teacher_q", teacher_q), ("teacher_k", teacher_k)):
        if t.dim() != 4:
            raise ValueError(f"{name} must be [batch, heads, seq, head_dim], got shape {list(t.shape)}")
    if student_q.shape != student_k.shape:
        raise ValueError(f"student_q {list(student_q.shape)} and student_k {list(student_k.shape)} differ")
    if teacher_q.shape != teacher_k.shape:
        raise ValueError(f"teacher_q {list(teacher_q.shape)} and teacher_k {list(teacher_k.shape)} differ")
    (b, h, n, _), (bt, ht, nt, _) = student_q.shape, teacher_q.shape
    if h != ht:
        raise ValueError(f"student has {h} heads and teacher {ht}; average teacher heads in groups first")
    if (b, n) != (bt, nt):
        raise ValueError(f"student [batch, seq] = [{b}, {n}] and teacher [{bt}, {nt}] differ")
    if tuple(key_mask.shape) != (b, n):
        raise ValueError(f"key_mask must be [batch, seq] = [{b}, {n}], got {list(key_mask.shape)}")


def _denominator(kind: str, key_mask: torch.Tensor, heads: int) -> torch.Tensor:
    """H x (counting rows) [x N for the MSE], at least 1, as an fp32 tensor (no host sync)."""
    rows = (key_mask != 0).sum().to(torch.float32) * heads
    if kind == "mse":
        rows = rows * key_mask.shape[1]
    return rows.clamp_min(1.0)


# ---------------------------------------------------------------------------------------------
# Plain-PyTorch reference: explicit [batch, heads, seq, seq] maps, autograd for the gradients.
# ---------------------------------------------------------------------------------------------

def masked_log_softmax(scores: torch.Tensor, key_real: torch.Tensor) -> torch.Tensor:
    """log softmax over real keys (-inf at padded keys); a row without real keys gets -inf everywhere, not NaN."""
    has_key = key_real.any(dim=-1, keepdim=True)
    logp = torch.log_softmax(scores.masked_fill(~key_real, float("-inf")).masked_fill(~has_key, 0.0), dim=-1)
    return logp.masked_fill(~key_real, float("-inf"))


def attention_prob_loss_reference(kind, student_q, student_k, teacher_q, teacher_k, key_mask) -> torch.Tensor:
    """The loss of the module docstring computed with explicit maps (fp32)."""
    _check_inputs(student_q, student_k, teacher_q, teacher_k, key_mask)
    heads = student_q.shape[1]
    key_real = (key_mask != 0)[:, None, None, :]  # [B, 1, 1, N]
    row_counts = (key_mask != 0)[:, None, :, None]  # [B, 1, N, 1]
    qs, ks = student_q.float(), student_k.float()
    qt, kt = teacher_q.detach().float(), teacher_k.detach().float()
    logp_s = masked_log_softmax(qs @ ks.transpose(-1, -2) * qs.shape[-1] ** -0.5, key_real)
    logp_t = masked_log_softmax(qt @ kt.transpose(-1, -2) * qt.shape[-1] ** -0.5, key_real)
    p_s, p_t = logp_s.exp(), logp_t.exp()
    if kind == "mse":
        per_entry = (p_s - p_t) ** 2
    elif kind == "kl":
        padded = ~key_real  # p_t is 0 there; zero the -inf logs so that 0 * log 0 is 0, not NaN
        per_entry = p_t * (logp_t.masked_fill(padded, 0.0) - logp_s.masked_fill(padded, 0.0))
    else:
        raise ValueError(f"unknown attention probability loss {kind!r}; use 'mse' or 'kl'")
    total = (per_entry * row_counts).sum()
    return total / _denominator(kind, key_mask, heads).to(total.device)


# ---------------------------------------------------------------------------------------------
# Triton path: autograd Function over the fused kernels.
# ---------------------------------------------------------------------------------------------

class _FusedAttentionProbLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, kind, student_q, student_k, teacher_q, teacher_k, key_mask, tiles):
        impl = kernel_module(TRITON_MODULE, student_q)
        batch, heads, seq, _ = student_q.shape
        mask_i32 = key_mask_int32(key_mask, batch, seq)
        klen = key_lengths(mask_i32)
        precisions = (dot_precision(student_q.dtype), dot_precision(teacher_q.dtype))
        pads = (padded_head_dim(student_q.shape[-1]), padded_head_dim(teacher_q.shape[-1]))
        row_loss, lse_s, lse_t, delta = impl.prob_loss_forward(kind, student_q, student_k, teacher_q, teacher_k, mask_i32,
                                                               klen, precisions, pads, **tiles)
        denominator = _denominator(kind, mask_i32, heads)
        ctx.save_for_backward(student_q, student_k, teacher_q, teacher_k, mask_i32, klen, lse_s, lse_t, delta, denominator)
        ctx.kind, ctx.impl, ctx.precisions, ctx.pads, ctx.tiles = kind, impl, precisions, pads, tiles
        return row_loss.sum() / denominator

    @staticmethod
    def backward(ctx, grad_loss):
        qs, ks, qt, kt, mask_i32, klen, lse_s, lse_t, delta, denominator = ctx.saved_tensors
        coef = (grad_loss.to(torch.float32) / denominator).reshape(1).contiguous()
        dqs, dks = ctx.impl.prob_loss_backward(ctx.kind, qs, ks, qt, kt, mask_i32, klen, lse_s, lse_t, delta, coef,
                                               ctx.precisions, ctx.pads, **ctx.tiles)
        return None, dqs, dks, None, None, None, None


def _attention_prob_loss(kind, student_q, student_k, teacher_q, teacher_k, key_mask, backend, tiles):
    _check_inputs(student_q, student_k, teacher_q, teacher_k, key_mask)
    if resolve_backend(backend, student_q) == "reference":
        return attention_prob_loss_reference(kind, student_q, student_k, teacher_q, teacher_k, key_mask)
    devices = {t.device for t in (student_q, student_k, teacher_q, teacher_k, key_mask)}
    if len(devices) != 1:
        raise ValueError(f"all inputs must be on one device, got {sorted(map(str, devices))}")
    return _FusedAttentionProbLoss.apply(kind, student_q, student_k, teacher_q.detach(), teacher_k.detach(), key_mask,
                                         tiles or {})


def attention_prob_mse(student_q, student_k, teacher_q, teacher_k, key_mask, *, backend: str = "auto",
                       tiles: dict | None = None) -> torch.Tensor:
    """MSE between student and teacher attention probabilities (see the module docstring), fp32 scalar.

    Inputs are [batch, heads, seq, head_dim] (head dims may differ between the models) and a
    [batch, seq] key mask. ``backend``: "auto" (Triton on CUDA, else the reference), "triton"
    (the Triton interpreter on CPU tensors) or "reference". ``tiles`` ({"block_m", "block_n"})
    fixes the tile shape instead of autotuning; tests use it to make sequences ragged.
    """
    return _attention_prob_loss("mse", student_q, student_k, teacher_q, teacher_k, key_mask, backend, tiles)


def attention_prob_kl(student_q, student_k, teacher_q, teacher_k, key_mask, *, backend: str = "auto",
                      tiles: dict | None = None) -> torch.Tensor:
    """KL(teacher || student) of the attention probabilities, per row, averaged (see the module docstring)."""
    return _attention_prob_loss("kl", student_q, student_k, teacher_q, teacher_k, key_mask, backend, tiles)
