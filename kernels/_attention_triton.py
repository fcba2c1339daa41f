"""Triton kernel of the encoder attention (math and reference: :mod:`kdtool.kernels.attention`).

One program per [BLOCK_M query rows] x (batch, head). It streams [BLOCK_N] key/value tiles,
keeping for each row the running max m and sum l of exp(scores - m) and an accumulator of
exp(scores - m) V, rescaled by exp(m_old - m_new) whenever the max grows (the online softmax of
FlashAttention). Scores are in the log2 domain so that ``exp2`` does the exponentials. The loop
stops at the batch element's last real key (``KLEN``), so right padding costs no key tiles.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from kdtool.kernels._triton_common import dot

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
LOG2E = 1.4426950408889634

TILE_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
    for bm, bn, w, s in ((128, 64, 4, 3), (128, 64, 8, 3), (64, 64, 4, 3), (128, 32, 4, 3), (64, 32, 4, 2),
                         (128, 128, 8, 2))
]


@triton.jit
def _attention_fwd_kernel(
    Q, K, V, MASK, KLEN, OUT,
    sq_b, sq_h, sq_n, sq_d, sk_b, sk_h, sk_n, sk_d, sv_b, sv_h, sv_n, sv_d, so_b, so_h, so_n, so_d,
    H, N, D, scale_log2,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, D_PAD: tl.constexpr, PREC: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    klen = tl.load(KLEN + b)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_in = rows < N
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, D_PAD)
    d_in = offs_d < D
    q = tl.load(Q + b * sq_b + h * sq_h + rows[:, None] * sq_n + offs_d[None, :] * sq_d,
                mask=row_in[:, None] & d_in[None, :], other=0.0)
    k_base = K + b * sk_b + h * sk_h
    v_base = V + b * sv_b + h * sv_h

    m_i = tl.full([BLOCK_M], -1.0e30, tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, D_PAD], tl.float32)
    for start in range(0, klen, BLOCK_N):
        cols = start + offs_n
        key_real = (tl.load(MASK + b * N + cols, mask=cols < N, other=0) != 0) & (cols < N)
        k = tl.load(k_base + cols[:, None] * sk_n + offs_d[None, :] * sk_d, mask=key_real[:, None] & d_in[None, :], other=0.0)
        v = tl.load(v_base + cols[:, None] * sv_n + offs_d[None, :] * sv_d, mask=key_real[:, None] & d_in[None, :], other=0.0)
        s = dot(q, tl.trans(k), PREC) * scale_log2
        s = tl.where(key_real[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + dot(p.to(v.dtype), v, PREC)
        m_i = m_new
    # A row with no real key (a fully padded sequence) has l = 0 and acc = 0: its output is 0.
    out = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]
    tl.store(OUT + b * so_b + h * so_h + rows[:, None] * so_n + offs_d[None, :] * so_d,
             out.to(OUT.dtype.element_ty), mask=row_in[:, None] & d_in[None, :])


_attention_fwd_tuned = triton.autotune(TILE_CONFIGS, key=["N", "D"])(_attention_fwd_kernel)


def attention_forward(q, k, v, mask_i32, klen, scale, d_pad, precision, *, block_m=None, block_n=None):
    """softmax(Q K^T * scale, real keys only) V as a new [B, H, N, D] tensor in q's dtype."""
    B, H, N, D = q.shape
    out = torch.empty_like(q)
    args = [q, k, v, mask_i32, klen, out, *q.stride(), *k.stride(), *v.stride(), *out.stride(), H, N, D, scale * LOG2E]
    if INTERPRETED or block_m is not None:
        bm, bn = block_m or 16, block_n or 16
        _attention_fwd_kernel[(triton.cdiv(N, bm), B * H)](*args, BLOCK_M=bm, BLOCK_N=bn, D_PAD=d_pad, PREC=precision)
    else:
        grid = lambda meta: (triton.cdiv(N, meta["BLOCK_M"]), B * H)  # noqa: E731
        _attention_fwd_tuned[grid](*args, D_PAD=d_pad, PREC=precision)
    return out
