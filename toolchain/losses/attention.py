"""Distillation losses: attention (pre-softmax scores or probabilities), hidden, prediction, hard span.

Every loss is masked for padding and returns a scalar; callers weight and sum them.

Normalisation, chosen so that data-parallel runs with equal per-process batches average to the
loss of the global batch: per-example losses are means over that example's valid tokens and are
then averaged over the batch; the attention losses are means over batch x heads x seq x seq
(scores, as TinyBERT's explicit computation) or batch x heads x valid rows x seq (probabilities).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

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
    """Probability MSE through the fused kernel (kdtool.kernels) where it exists, else explicitly."""
    if student_q.shape[1] == teacher_q.shape[1]:
        try:
            from kdtool.kernels import attention_prob_mse as fused
        except ImportError:
            fused = None
        if fused is not None:
            return fused(student_q, student_k, teacher_q, teacher_k, key_mask)
    return attention_prob_mse_explicit(student_q, student_k, teacher_q, teacher_k, key_mask)


ATTENTION_LOSSES = {"scores": attention_score_mse, "probs": attention_prob_mse}


def hidden_mse(student_h: torch.Tensor, teacher_h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE over valid tokens x hidden dims per example, averaged over the batch. Inputs already projected."""
    m = mask.to(torch.float32)
    sq = ((student_h.float() - teacher_h.float()) ** 2).mean(-1)
    return ((sq * m).sum(1) / m.sum(1).clamp(min=1)).mean()


def _masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor | None, temperature: float) -> torch.Tensor:
    scaled = logits.float() / temperature
    return torch.log_softmax(scaled if mask is None else scaled.masked_fill(mask == 0, -1e9), dim=-1)


def prediction_loss(student_logits: tuple[torch.Tensor, ...], teacher_logits: tuple[torch.Tensor, ...],
                    mask: torch.Tensor | None, *, temperature: float = 1.0, kind: str = "kl") -> torch.Tensor:
    """Soft loss on the task's logits ((start, end) for QA, (logits,) for classification), averaged over
    the outputs and the batch; padding masked out (``mask=None``: classifier logits, nothing to mask).

    ``kl``: KL(p_T || p_S) x T^2 (Hinton). ``soft-ce``: -sum p_T log p_S (TinyBERT's soft cross-entropy).
    ``mse``: MSE of the raw logits (Tang et al. 2019; kdtool.strategies.losses.logits_mse), no temperature.
    """
    if kind == "mse":
        from kdtool.strategies.losses import logits_mse

        return logits_mse(student_logits, teacher_logits, mask)
    total = 0.0
    for s, t in zip(student_logits, teacher_logits):
        log_ps = _masked_log_softmax(s, mask, temperature)
        log_pt = _masked_log_softmax(t, mask, temperature)
        pt = log_pt.exp()
        if kind == "kl":
            total = total + (pt * (log_pt - log_ps)).sum(-1).mean() * temperature ** 2
        elif kind == "soft-ce":
            total = total + (-(pt * log_ps).sum(-1)).mean()
        else:
            raise ValueError(f"unknown prediction loss {kind!r}")
    return total / len(student_logits)


def span_loss(start_logits: torch.Tensor, end_logits: torch.Tensor, start_positions: torch.Tensor,
              end_positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The hard-label loss: cross-entropy of the gold start and end, padding masked out."""
    ls = _masked_log_softmax(start_logits, mask, 1.0)
    le = _masked_log_softmax(end_logits, mask, 1.0)
    return -(ls.gather(1, start_positions[:, None]).mean() + le.gather(1, end_positions[:, None]).mean()) / 2
