"""The losses the survey's strategies add to TinyBERT's (kdtool.distill.losses).

Each takes student tensors first and teacher tensors second, detaches the teacher's (so gradients
reach the student only, whatever the caller did), is masked for padding where it reads tokens,
returns a scalar, and is zero exactly when the student matches the teacher in the sense the
strategy cares about.

- :func:`hidden_cosine` — DistilBERT (Sanh et al. 2019): ``1 - cos(h_S, h_T)`` per valid token of the
  last hidden states (``nn.CosineEmbeddingLoss`` with target 1), mean over tokens, then over the batch.
- :func:`patient_cls_mse` — Patient KD (Sun et al. 2019), ``L_PT``: for each mapped layer pair the
  squared L2 distance between the *normalised* ``[CLS]`` (position 0) hidden states,
  ``|| h_S/||h_S|| - h_T/||h_T|| ||^2``, summed over the layer pairs and averaged over the batch.
- :func:`logits_mse` — Tang et al. 2019 (BiLSTM students): MSE between student and teacher logits
  (no softmax, no temperature), over valid positions for per-token logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def hidden_cosine(student_h: torch.Tensor, teacher_h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean ``1 - cosine`` over valid tokens per example, averaged over the batch (DistilBERT's L_cos)."""
    cos = F.cosine_similarity(student_h.float(), teacher_h.detach().float(), dim=-1, eps=1e-8)
    m = mask.to(torch.float32)
    return (((1.0 - cos) * m).sum(1) / m.sum(1).clamp(min=1)).mean()


def patient_cls_mse(student_states: Sequence[torch.Tensor], teacher_states: Sequence[torch.Tensor]) -> torch.Tensor:
    """PKD's L_PT over paired layers (``[batch, seq, hidden]`` each; only position 0, the [CLS] token, counts)."""
    if len(student_states) != len(teacher_states) or not student_states:
        raise ValueError("patient_cls_mse needs the same, non-zero number of student and teacher layers")
    total = 0.0
    for s, t in zip(student_states, teacher_states):
        s_cls = F.normalize(s[:, 0].float(), dim=-1)
        t_cls = F.normalize(t[:, 0].detach().float(), dim=-1)
        total = total + ((s_cls - t_cls) ** 2).sum(-1).mean()
    return total


def logits_mse(student_logits: Sequence[torch.Tensor], teacher_logits: Sequence[torch.Tensor],
               mask: torch.Tensor | None = None) -> torch.Tensor:
    """MSE between raw logits, averaged over the outputs (start/end, or the one classifier output).

    With ``mask`` (``[batch, seq]``) only valid positions count, per example then over the batch;
    without it the mean is over every entry (classifier logits ``[batch, labels]``).
    """
    total = 0.0
    for s, t in zip(student_logits, teacher_logits):
        sq = (s.float() - t.detach().float()) ** 2
        if mask is None:
            total = total + sq.mean()
        else:
            m = mask.to(torch.float32)
            total = total + ((sq * m).sum(1) / m.sum(1).clamp(min=1)).mean()
    return total / len(student_logits)
