"""Triton kernels of the attention-probability losses (math and reference: :mod:`kdtool.kernels.attention_loss`).

Three kernels, each streaming [BLOCK_M, BLOCK_N] tiles of both models' scores, never a full
[seq, seq] map. Scores are kept in the log2 domain (``s2 = q.k * scale * log2(e)``) so that
``exp2`` does the softmax; ``lse2 = m2 + log2(l)`` is a row's log-sum-exp in that domain.

- ``_prob_loss_fwd_kernel`` (one program per [BLOCK_M query rows] x (batch, head)):
  pass 1 over key tiles: online max / sum of both softmaxes; pass 2: the per-row loss, and for MSE
  ``delta_i = sum_j P_S[i,j] (P_S[i,j] - P_T[i,j])``, which the softmax backward needs.
  Stores per row: loss, lse2 of both models (+inf for rows that do not count) and delta.
- ``_prob_loss_dq_kernel`` (same grid): dQ_S for a row tile, looping over key tiles.
- ``_prob_loss_dk_kernel`` (one program per [BLOCK_N keys] x (batch, head)): dK_S for a key tile,
  looping over query tiles.
  Two passes instead of atomics: each output tile has one writer, so the gradients are deterministic.

Loops stop at the batch element's last real key (``KLEN``): with right padding, tiles that are
all padding are skipped.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from kdtool.kernels._triton_common import dot

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
LOSS_KINDS = {"mse": 0, "kl": 1}
LN2 = tl.constexpr(0.6931471805599453)  # a constexpr: jit code may read it
LOG2E = 1.4426950408889634

# Compiled kernels pick a tile shape per (seq, head dims) by timing these; the interpreter uses 16 x 16.
TILE_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
    for bm, bn, w, s in ((64, 64, 4, 2), (64, 32, 4, 2), (32, 64, 4, 2), (128, 64, 8, 2), (64, 64, 4, 3), (128, 32, 4, 2))
]


@triton.jit
def _load_tile(base, idx, idx_ok, stride_n, stride_d, offs_d, D):
    """Rows ``idx`` of one [seq, head_dim] matrix, zeros where ``idx_ok`` is false or past ``D``."""
    return tl.load(base + idx[:, None] * stride_n + offs_d[None, :] * stride_d,
                   mask=idx_ok[:, None] & (offs_d[None, :] < D), other=0.0)


@triton.jit
def _scores(q, k, scale_log2, key_real, PREC: tl.constexpr):
    """One model's scores of a query tile against a key tile, log2 domain, -inf at padded keys."""
    s = dot(q, tl.trans(k), PREC) * scale_log2
    return tl.where(key_real[None, :], s, float("-inf"))


@triton.jit
def _prob_loss_fwd_kernel(
    QS, KS, QT, KT, MASK, KLEN, ROW_LOSS, LSE_S, LSE_T, DELTA,
    sqs_b, sqs_h, sqs_n, sqs_d, sks_b, sks_h, sks_n, sks_d,
    sqt_b, sqt_h, sqt_n, sqt_d, skt_b, skt_h, skt_n, skt_d,
    H, N, DS, DT, scale_s_log2, scale_t_log2,
    KIND: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, DS_PAD: tl.constexpr, DT_PAD: tl.constexpr,
    PREC_S: tl.constexpr, PREC_T: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    klen = tl.load(KLEN + b)
    kend = tl.where(pid_m * BLOCK_M < klen, klen, 0)  # a tile past the last real token has no valid rows
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_in = rows < N
    row_real = tl.load(MASK + b * N + rows, mask=row_in, other=0) != 0
    offs_n = tl.arange(0, BLOCK_N)
    offs_ds = tl.arange(0, DS_PAD)
    offs_dt = tl.arange(0, DT_PAD)
    qs = _load_tile(QS + b * sqs_b + h * sqs_h, rows, row_in, sqs_n, sqs_d, offs_ds, DS)
    qt = _load_tile(QT + b * sqt_b + h * sqt_h, rows, row_in, sqt_n, sqt_d, offs_dt, DT)
    ks_base = KS + b * sks_b + h * sks_h
    kt_base = KT + b * skt_b + h * skt_h

    # Pass 1: row max and sum of exp of both softmaxes (online: rescale the sum when the max grows).
    m_s = tl.full([BLOCK_M], -1.0e30, tl.float32)
    m_t = tl.full([BLOCK_M], -1.0e30, tl.float32)
    l_s = tl.zeros([BLOCK_M], tl.float32)
    l_t = tl.zeros([BLOCK_M], tl.float32)
    for start in range(0, kend, BLOCK_N):
        cols = start + offs_n
        key_real = (tl.load(MASK + b * N + cols, mask=cols < N, other=0) != 0) & (cols < N)
        ks = _load_tile(ks_base, cols, key_real, sks_n, sks_d, offs_ds, DS)
        kt = _load_tile(kt_base, cols, key_real, skt_n, skt_d, offs_dt, DT)
        s_s = _scores(qs, ks, scale_s_log2, key_real, PREC_S)
        s_t = _scores(qt, kt, scale_t_log2, key_real, PREC_T)
        m_s_new = tl.maximum(m_s, tl.max(s_s, 1))
        m_t_new = tl.maximum(m_t, tl.max(s_t, 1))
        l_s = l_s * tl.exp2(m_s - m_s_new) + tl.sum(tl.exp2(s_s - m_s_new[:, None]), 1)
        l_t = l_t * tl.exp2(m_t - m_t_new) + tl.sum(tl.exp2(s_t - m_t_new[:, None]), 1)
        m_s = m_s_new
        m_t = m_t_new

    # Rows that count: real query tokens with at least one real key. The others get lse = +inf,
    # so every probability recomputed from it (here and in the backward) is exactly 0.
    valid = row_in & row_real & (l_s > 0)
    lse_s = tl.where(valid, m_s + tl.log2(tl.where(valid, l_s, 1.0)), float("inf"))
    lse_t = tl.where(valid, m_t + tl.log2(tl.where(valid, l_t, 1.0)), float("inf"))

    # Pass 2: the loss of each row (and delta for the MSE backward).
    loss = tl.zeros([BLOCK_M], tl.float32)
    delta = tl.zeros([BLOCK_M], tl.float32)
    for start in range(0, kend, BLOCK_N):
        cols = start + offs_n
        key_real = (tl.load(MASK + b * N + cols, mask=cols < N, other=0) != 0) & (cols < N)
        ks = _load_tile(ks_base, cols, key_real, sks_n, sks_d, offs_ds, DS)
        kt = _load_tile(kt_base, cols, key_real, skt_n, skt_d, offs_dt, DT)
        s_s = _scores(qs, ks, scale_s_log2, key_real, PREC_S)
        s_t = _scores(qt, kt, scale_t_log2, key_real, PREC_T)
        p_s = tl.exp2(s_s - lse_s[:, None])
        p_t = tl.exp2(s_t - lse_t[:, None])
        if KIND == 0:
            diff = p_s - p_t
            loss += tl.sum(diff * diff, 1)
            delta += tl.sum(p_s * diff, 1)
        else:
            log_ratio = (s_t - lse_t[:, None]) - (s_s - lse_s[:, None])
            loss += tl.sum(tl.where(p_t > 0, p_t * log_ratio, 0.0), 1)
    if KIND == 1:
        loss = loss * LN2
    out = pid_bh * N + rows
    tl.store(ROW_LOSS + out, loss, mask=row_in)
    tl.store(LSE_S + out, lse_s, mask=row_in)
    tl.store(LSE_T + out, lse_t, mask=row_in)
    tl.store(DELTA + out, delta, mask=row_in)


@triton.jit
def _score_gradient(p_s, p_t, delta, KIND: tl.constexpr):
    """d loss / d (student scores) of one tile, up to the factor (upstream grad / denominator)."""
    if KIND == 0:
        return 2.0 * p_s * (p_s - p_t - delta[:, None])
    else:
        return p_s - p_t


@triton.jit
def _prob_loss_dq_kernel(
    QS, KS, QT, KT, MASK, KLEN, LSE_S, LSE_T, DELTA, COEF, DQS,
    sqs_b, sqs_h, sqs_n, sqs_d, sks_b, sks_h, sks_n, sks_d,
    sqt_b, sqt_h, sqt_n, sqt_d, skt_b, skt_h, skt_n, skt_d,
    H, N, DS, DT, scale_s_log2, scale_t_log2, scale_s,
    KIND: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, DS_PAD: tl.constexpr, DT_PAD: tl.constexpr,
    PREC_S: tl.constexpr, PREC_T: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    klen = tl.load(KLEN + b)
    kend = tl.where(pid_m * BLOCK_M < klen, klen, 0)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_in = rows < N
    offs_n = tl.arange(0, BLOCK_N)
    offs_ds = tl.arange(0, DS_PAD)
    offs_dt = tl.arange(0, DT_PAD)
    qs = _load_tile(QS + b * sqs_b + h * sqs_h, rows, row_in, sqs_n, sqs_d, offs_ds, DS)
    qt = _load_tile(QT + b * sqt_b + h * sqt_h, rows, row_in, sqt_n, sqt_d, offs_dt, DT)
    lse_s = tl.load(LSE_S + pid_bh * N + rows, mask=row_in, other=float("inf"))
    lse_t = tl.load(LSE_T + pid_bh * N + rows, mask=row_in, other=float("inf"))
    delta = tl.load(DELTA + pid_bh * N + rows, mask=row_in, other=0.0)
    ks_base = KS + b * sks_b + h * sks_h
    kt_base = KT + b * skt_b + h * skt_h
    dq = tl.zeros([BLOCK_M, DS_PAD], tl.float32)
    for start in range(0, kend, BLOCK_N):
        cols = start + offs_n
        key_real = (tl.load(MASK + b * N + cols, mask=cols < N, other=0) != 0) & (cols < N)
        ks = _load_tile(ks_base, cols, key_real, sks_n, sks_d, offs_ds, DS)
        kt = _load_tile(kt_base, cols, key_real, skt_n, skt_d, offs_dt, DT)
        s_s = _scores(qs, ks, scale_s_log2, key_real, PREC_S)
        s_t = _scores(qt, kt, scale_t_log2, key_real, PREC_T)
        d_scores = _score_gradient(tl.exp2(s_s - lse_s[:, None]), tl.exp2(s_t - lse_t[:, None]), delta, KIND)
        dq += dot(d_scores.to(ks.dtype), ks, PREC_S)
    dq = dq * (tl.load(COEF) * scale_s)
    tl.store(DQS + b * sqs_b + h * sqs_h + rows[:, None] * sqs_n + offs_ds[None, :] * sqs_d,
             dq.to(DQS.dtype.element_ty), mask=row_in[:, None] & (offs_ds[None, :] < DS))


@triton.jit
def _prob_loss_dk_kernel(
    QS, KS, QT, KT, MASK, KLEN, LSE_S, LSE_T, DELTA, COEF, DKS,
    sqs_b, sqs_h, sqs_n, sqs_d, sks_b, sks_h, sks_n, sks_d,
    sqt_b, sqt_h, sqt_n, sqt_d, skt_b, skt_h, skt_n, skt_d,
    H, N, DS, DT, scale_s_log2, scale_t_log2, scale_s,
    KIND: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, DS_PAD: tl.constexpr, DT_PAD: tl.constexpr,
    PREC_S: tl.constexpr, PREC_T: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    klen = tl.load(KLEN + b)
    qend = tl.where(pid_n * BLOCK_N < klen, klen, 0)  # rows past the last real token never count
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    col_in = cols < N
    key_real = (tl.load(MASK + b * N + cols, mask=col_in, other=0) != 0) & col_in
    offs_m = tl.arange(0, BLOCK_M)
    offs_ds = tl.arange(0, DS_PAD)
    offs_dt = tl.arange(0, DT_PAD)
    qs_base = QS + b * sqs_b + h * sqs_h
    qt_base = QT + b * sqt_b + h * sqt_h
    ks = _load_tile(KS + b * sks_b + h * sks_h, cols, key_real, sks_n, sks_d, offs_ds, DS)
    kt = _load_tile(KT + b * skt_b + h * skt_h, cols, key_real, skt_n, skt_d, offs_dt, DT)
    dk = tl.zeros([BLOCK_N, DS_PAD], tl.float32)
    for start in range(0, qend, BLOCK_M):
        rows = start + offs_m
        row_in = rows < N
        qs = _load_tile(qs_base, rows, row_in, sqs_n, sqs_d, offs_ds, DS)
        qt = _load_tile(qt_base, rows, row_in, sqt_n, sqt_d, offs_dt, DT)
        lse_s = tl.load(LSE_S + pid_bh * N + rows, mask=row_in, other=float("inf"))
        lse_t = tl.load(LSE_T + pid_bh * N + rows, mask=row_in, other=float("inf"))
        delta = tl.load(DELTA + pid_bh * N + rows, mask=row_in, other=0.0)
        s_s = _scores(qs, ks, scale_s_log2, key_real, PREC_S)
        s_t = _scores(qt, kt, scale_t_log2, key_real, PREC_T)
        d_scores = _score_gradient(tl.exp2(s_s - lse_s[:, None]), tl.exp2(s_t - lse_t[:, None]), delta, KIND)
        dk += dot(tl.trans(d_scores.to(qs.dtype)), qs, PREC_S)
    dk = dk * (tl.load(COEF) * scale_s)
    tl.store(DKS + b * sks_b + h * sks_h + cols[:, None] * sks_n + offs_ds[None, :] * sks_d,
             dk.to(DKS.dtype.element_ty), mask=col_in[:, None] & (offs_ds[None, :] < DS))


_fwd_tuned = triton.autotune(TILE_CONFIGS, key=["N", "DS", "DT", "KIND"])(_prob_loss_fwd_kernel)
_dq_tuned = triton.autotune(TILE_CONFIGS, key=["N", "DS", "DT", "KIND"])(_prob_loss_dq_kernel)
_dk_tuned = triton.autotune(TILE_CONFIGS, key=["N", "DS", "DT", "KIND"])(_prob_loss_dk_kernel)


def _strides(*tensors):
    return [s for t in tensors for s in t.stride()]


def _launch(kernel, tuned, grid_rows_axis, args, statics, block_m, block_n):
    """Launch with the autotuned tile on a GPU, or with the given tile under the interpreter."""
    if INTERPRETED or block_m is not None:
        bm, bn = block_m or 16, block_n or 16
        n_tiles = triton.cdiv(statics["N"], bm if grid_rows_axis == "rows" else bn)
        kernel[(n_tiles, statics["BH"])](*args, BLOCK_M=bm, BLOCK_N=bn, **statics["constexprs"])
    else:
        def grid(meta):
            return (triton.cdiv(statics["N"], meta["BLOCK_M" if grid_rows_axis == "rows" else "BLOCK_N"]), statics["BH"])
        tuned[grid](*args, **statics["constexprs"])


def prob_loss_forward(kind, qs, ks, qt, kt, mask_i32, klen, precisions, pads, *, block_m=None, block_n=None):
    """Per-row loss [B, H, N] and the row statistics the backward needs (lse2 of both models, delta)."""
    B, H, N, DS = qs.shape
    DT = qt.shape[-1]
    row_loss, lse_s, lse_t, delta = (torch.empty((B, H, N), device=qs.device, dtype=torch.float32) for _ in range(4))
    args = [qs, ks, qt, kt, mask_i32, klen, row_loss, lse_s, lse_t, delta, *_strides(qs, ks, qt, kt),
            H, N, DS, DT, DS ** -0.5 * LOG2E, DT ** -0.5 * LOG2E]
    statics = {"N": N, "BH": B * H, "constexprs": dict(KIND=LOSS_KINDS[kind], DS_PAD=pads[0], DT_PAD=pads[1],
                                                       PREC_S=precisions[0], PREC_T=precisions[1])}
    _launch(_prob_loss_fwd_kernel, _fwd_tuned, "rows", args, statics, block_m, block_n)
    return row_loss, lse_s, lse_t, delta


def prob_loss_backward(kind, qs, ks, qt, kt, mask_i32, klen, lse_s, lse_t, delta, coef, precisions, pads,
                       *, block_m=None, block_n=None):
    """dQ_S and dK_S, recomputing both models' score tiles; ``coef`` = upstream grad / denominator."""
    B, H, N, DS = qs.shape
    DT = qt.shape[-1]
    dqs = torch.empty_like(qs)
    dks = torch.empty_like(ks)
    common = [*_strides(qs, ks, qt, kt), H, N, DS, DT, DS ** -0.5 * LOG2E, DT ** -0.5 * LOG2E, DS ** -0.5]
    statics = {"N": N, "BH": B * H, "constexprs": dict(KIND=LOSS_KINDS[kind], DS_PAD=pads[0], DT_PAD=pads[1],
                                                       PREC_S=precisions[0], PREC_T=precisions[1])}
    if dqs.stride() != qs.stride() or dks.stride() != ks.stride():  # empty_like keeps dense strides; others copy
        qs, ks = qs.contiguous(), ks.contiguous()
        dqs, dks = torch.empty_like(qs), torch.empty_like(ks)
        common[:8] = [*qs.stride(), *ks.stride()]
    inputs = [qs, ks, qt, kt, mask_i32, klen, lse_s, lse_t, delta, coef]
    _launch(_prob_loss_dq_kernel, _dq_tuned, "rows", [*inputs, dqs, *common], statics, block_m, block_n)
    _launch(_prob_loss_dk_kernel, _dk_tuned, "cols", [*inputs, dks, *common], statics, block_m, block_n)
    return dqs, dks
