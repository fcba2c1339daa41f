"""Losses on hidden states: TinyBERT's MSE and the ones the survey's strategies add.

Each takes student tensors first and teacher tensors second, is masked for padding where it reads
tokens, returns a scalar, and is zero exactly when the student matches the teacher in the sense the
strategy cares about. The strategies' losses detach the teacher's tensors (so gradients reach the
student only, whatever the caller did); TinyBERT's receives them from a no-grad teacher pass.

- :func:`hidden_mse` — TinyBERT: MSE over valid tokens x hidden dims per example, averaged over the batch
  (inputs already projected to the teacher's width).
- :func:`hidden_cosine` — DistilBERT (Sanh et al. 2019): ``1 - cos(h_S, h_T)`` per valid token of the
  last hidden states (``nn.CosineEmbeddingLoss`` with target 1), mean over tokens, then over the batch.
- :func:`patient_cls_mse` — Patient KD (Sun et al. 2019), ``L_PT``: for each mapped layer pair the
  squared L2 distance between the *normalised* ``[CLS]`` (position 0) hidden states,
  ``|| h_S/||h_S|| - h_T/||h_T|| ||^2``, summed over the layer pairs and averaged over the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def hidden_mse(student_h: torch.Tensor, teacher_h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE over valid tokens x hidden dims per example, averaged over the batch. Inputs already projected."""
    m = mask.to(torch.float32)
    sq = ((student_h.float() - teacher_h.float()) ** 2).mean(-1)
    return ((sq * m).sum(1) / m.sum(1).clamp(min=1)).mean()



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
    for s, t in zip(student_states, teacher_states, strict=True):
        s_cls = F.normalize(s[:, 0].float(), dim=-1)
        t_cls = F.normalize(t[:, 0].detach().float(), dim=-1)
        total = total + ((s_cls - t_cls) ** 2).sum(-1).mean()
    return total
