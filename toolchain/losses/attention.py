"""TinyBERT's attention losses: MSE of pre-softmax scores (closed form, never a seq x seq map) or of
post-softmax probabilities (the fused Triton kernel of kdtool.kernels where it applies).

Means over batch x heads x seq x seq (scores, as TinyBERT's explicit computation) or batch x heads x
valid rows x seq (probabilities), so data-parallel runs with equal per-process batches average to the
loss of the global batch. Teacher heads a multiple of the student's are averaged in consecutive groups.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from kdtool.kernels import attention_prob_mse as fused_attention_prob_mse  # triton loads only when a kernel runs
from kdtool.losses.registry import ATTENTION_KINDS

TINYBERT_MASK = -10000.0  # the additive key mask in TinyBERT's code
MASK_FLOOR = -100.0  # TinyBERT zeroes every score <= this (masked keys drop out)


def group_heads(q: torch.Tensor, k: torch.Tensor, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Q, K whose score map is the mean of ``groups`` consecutive heads' score maps (scaled by 1/sqrt(d)).

    ``mean_h Q_h K_h^T / sqrt(d) = concat_h(Q_h) concat_h(K_h)^T / (g sqrt(d))``: concatenating a group's
    head dims keeps the U V^T form. Returned Q already carries the full scale, so use it with scale 1.
    """
    b, h, n, d = q.shape
    if h % groups:
        raise ValueError(f"{h} heads cannot be split into groups of {groups}")
    def cat(x):
        return x.view(b, h // groups, groups, n, d).permute(0, 1, 3, 2, 4).reshape(b, h // groups, n, groups * d)
    return cat(q) / (groups * math.sqrt(d)), cat(k)


def _pair(student_q, teacher_q, teacher_k):
    hs, ht = student_q.shape[1], teacher_q.shape[1]
    if ht % hs:
        raise ValueError(f"teacher heads ({ht}) must be a multiple of student heads ({hs}) to pair them")
    tq, tk = group_heads(teacher_q, teacher_k, ht // hs)
    return tq, tk


def attention_score_mse(student_q: torch.Tensor, student_k: torch.Tensor, teacher_q: torch.Tensor,
                        teacher_k: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
    """TinyBERT's pre-softmax attention MSE in closed form, never forming a seq x seq map.

    Inputs are ``[batch, heads, seq, head_dim]`` (head dims may differ; teacher heads a multiple of the
    student's, averaged in consecutive groups) and ``key_mask`` ``[batch, seq]`` of 1/0. The result equals
    TinyBERT's explicit computation ``S = QK^T/sqrt(d) + (1-m)*(-10000)``, ``S[S <= -100] = 0``,
    ``mean((S_S - S_T)^2)`` over batch x heads x seq x seq, as long as no valid score is itself <= -100:
    masked keys drop out, and padded *query* rows still count against valid keys (TinyBERT does not mask
    them) and in the denominator.

    With ``U = [Q_S/sqrt(d_S), -Q_T/sqrt(d_T)]`` and ``V = [K_S m, K_T m]``, ``S_S - S_T = U V^T`` on valid keys,
    so the sum of squares is ``<U^T U, V^T V>_F``: O(seq (d_S+d_T)^2) per head. Computed in fp32 because
    it subtracts large terms when student and teacher agree (float64 inputs stay float64).
    """
    b, h, n, ds = student_q.shape
    dtype = torch.promote_types(torch.promote_types(student_q.dtype, teacher_q.dtype), torch.float32)
    tq, tk = _pair(student_q, teacher_q.to(dtype), teacher_k.to(dtype))
    m = key_mask.to(dtype)[:, None, :, None]
    u = torch.cat([student_q.to(dtype) / math.sqrt(ds), -tq], dim=-1)
    v = torch.cat([student_k.to(dtype) * m, tk * m], dim=-1)
    gu = torch.einsum("bhnd,bhne->bhde", u, u)
    gv = torch.einsum("bhnd,bhne->bhde", v, v)
    return (gu * gv).sum() / (b * h * n * n)


def attention_score_mse_explicit(student_q, student_k, teacher_q, teacher_k, key_mask) -> torch.Tensor:
    """The same loss computed as TinyBERT does, with full score maps (reference for tests and benchmarks)."""
    dtype = torch.promote_types(torch.promote_types(student_q.dtype, teacher_q.dtype), torch.float32)

    def scores(q, k):
        bias = (1.0 - key_mask.to(dtype))[:, None, None, :] * TINYBERT_MASK
        s = q.to(dtype) @ k.to(dtype).transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias
        return torch.where(s <= MASK_FLOOR, torch.zeros_like(s), s)
    hs, ht = student_q.shape[1], teacher_q.shape[1]
    t = scores(teacher_q, teacher_k)
    t = t.view(t.shape[0], hs, ht // hs, *t.shape[2:]).mean(2)
    return F.mse_loss(scores(student_q, student_k), t)


def _probs(q, k, key_mask):
    s = q.float() @ k.float().transpose(-1, -2) / math.sqrt(q.shape[-1])
    s = s.masked_fill(key_mask[:, None, None, :] == 0, float("-inf"))
    return torch.softmax(s, dim=-1)


def attention_prob_mse_explicit(student_q, student_k, teacher_q, teacher_k, key_mask) -> torch.Tensor:
    """MSE of post-softmax attention probabilities, mean over batch x heads x valid query rows x seq.

    Teacher heads a multiple of the student's are averaged in groups (as probability maps).
    """
    hs, ht = student_q.shape[1], teacher_q.shape[1]
    if ht % hs:
        raise ValueError(f"teacher heads ({ht}) must be a multiple of student heads ({hs}) to pair them")
    ps = _probs(student_q, student_k, key_mask)
    pt = _probs(teacher_q, teacher_k, key_mask)
    pt = pt.view(pt.shape[0], hs, ht // hs, *pt.shape[2:]).mean(2)
    rows = key_mask.float()[:, None, :, None]
    n = ps.shape[-1]
    return (((ps - pt) ** 2) * rows).sum() / (rows.sum() * hs * n)


def attention_prob_mse(student_q, student_k, teacher_q, teacher_k, key_mask) -> torch.Tensor:
    """Probability MSE through the fused kernel (kdtool.kernels: Triton on CUDA, its reference elsewhere)
    when student and teacher have as many heads, else explicitly (grouped teacher heads)."""
    if student_q.shape[1] == teacher_q.shape[1]:
        return fused_attention_prob_mse(student_q, student_k, teacher_q, teacher_k, key_mask)
    return attention_prob_mse_explicit(student_q, student_k, teacher_q, teacher_k, key_mask)


ATTENTION_LOSSES = dict(zip(ATTENTION_KINDS, (attention_score_mse, attention_prob_mse), strict=True))
