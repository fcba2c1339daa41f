"""Losses on the task's logits: the soft prediction loss (KL x T^2, soft cross-entropy, or MSE of raw
logits) and the hard span loss of extractive QA.

Each is masked for padding where it reads tokens and returns a scalar: per-example means over valid
positions, then averaged over the batch (so equal per-process batches average to the global batch's loss).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def logits_mse(student_logits: Sequence[torch.Tensor], teacher_logits: Sequence[torch.Tensor],
               mask: torch.Tensor | None = None) -> torch.Tensor:
    """MSE between raw logits, averaged over the outputs (start/end, or the one classifier output).

    With ``mask`` (``[batch, seq]``) only valid positions count, per example then over the batch;
    without it the mean is over every entry (classifier logits ``[batch, labels]``).
    """
    total = 0.0
    for s, t in zip(student_logits, teacher_logits, strict=True):
        sq = (s.float() - t.detach().float()) ** 2
        if mask is None:
            total = total + sq.mean()
        else:
            m = mask.to(torch.float32)
            total = total + ((sq * m).sum(1) / m.sum(1).clamp(min=1)).mean()
    return total / len(student_logits)


def _masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor | None, temperature: float) -> torch.Tensor:
    scaled = logits.float() / temperature
    return torch.log_softmax(scaled if mask is None else scaled.masked_fill(mask == 0, -1e9), dim=-1)


def prediction_loss(student_logits: tuple[torch.Tensor, ...], teacher_logits: tuple[torch.Tensor, ...],
                    mask: torch.Tensor | None, *, temperature: float = 1.0, kind: str = "kl") -> torch.Tensor:
    """Soft loss on the task's logits ((start, end) for QA, (logits,) for classification), averaged over
    the outputs and the batch; padding masked out (``mask=None``: classifier logits, nothing to mask).

    ``kl``: KL(p_T || p_S) x T^2 (Hinton). ``soft-ce``: -sum p_T log p_S (TinyBERT's soft cross-entropy).
    ``mse``: MSE of the raw logits (Tang et al. 2019; :func:`logits_mse`), no temperature.
    """
    if kind == "mse":
        return logits_mse(student_logits, teacher_logits, mask)
    total = 0.0
    for s, t in zip(student_logits, teacher_logits, strict=True):
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
