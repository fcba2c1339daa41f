"""The strategies' own losses: zero exactly when the student matches the teacher, non-zero otherwise,
invariant where the strategy says so, and gradients to the student only."""

from __future__ import annotations

import pytest
import torch

from kdtool.losses import hidden_cosine, logits_mse, patient_cls_mse
from kdtool.strategies import STRATEGIES


def _h(seed, shape=(3, 7, 16)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


MASK = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5])


def test_hidden_cosine_zero_iff_aligned_and_masked():
    t = _h(0)
    assert hidden_cosine(t.clone(), t, MASK).item() == pytest.approx(0, abs=1e-6)
    assert hidden_cosine(3.0 * t, t, MASK).item() == pytest.approx(0, abs=1e-6)  # cosine ignores scale
    s = _h(1)
    assert hidden_cosine(s, t, MASK).item() > 0.1
    s_pad = s.clone()
    s_pad[1, 4:] = -t[1, 4:]  # padded positions do not count
    assert hidden_cosine(s_pad, t, MASK).item() == pytest.approx(hidden_cosine(s, t, MASK).item())
    expected = torch.stack([(1 - torch.cosine_similarity(s[b], t[b], dim=-1))[: int(MASK[b].sum())].mean()
                            for b in range(3)]).mean()
    torch.testing.assert_close(hidden_cosine(s, t, MASK), expected.float())


def test_patient_loss_reads_normalised_cls_only():
    t = [_h(2), _h(3)]
    assert patient_cls_mse([x.clone() for x in t], t).item() == pytest.approx(0, abs=1e-6)
    scaled = [x * 5.0 for x in t]
    assert patient_cls_mse(scaled, t).item() == pytest.approx(0, abs=1e-10)
    other_tokens = [x.clone() for x in t]
    for x in other_tokens:
        x[:, 1:] = 0  # only position 0 ([CLS]) is compared
    assert patient_cls_mse(other_tokens, t).item() == pytest.approx(0, abs=1e-6)
    s = [_h(4), _h(5)]
    value = patient_cls_mse(s, t)
    expected = sum(((a[:, 0] / a[:, 0].norm(dim=-1, keepdim=True) - b[:, 0] / b[:, 0].norm(dim=-1, keepdim=True)) ** 2)
                   .sum(-1).mean() for a, b in zip(s, t, strict=True))
    torch.testing.assert_close(value, expected.float())
    assert 0 < value.item() <= 4 * len(s)
    with pytest.raises(ValueError):
        patient_cls_mse(s, t[:1])


def test_logits_mse_masked_per_token_and_plain_for_classes():
    start, end = _h(6, (3, 7)), _h(7, (3, 7))
    assert logits_mse((start, end), (start.clone(), end.clone()), MASK).item() == 0
    shifted = start.clone()
    shifted[2, 2:] += 100  # padding: ignored
    assert logits_mse((shifted, end), (start, end), MASK).item() == 0
    shifted[0, 0] += 1.0
    assert logits_mse((shifted, end), (start, end), MASK).item() == pytest.approx(1.0 / 7 / 3 / 2)
    cls_s, cls_t = _h(8, (4, 2)), _h(9, (4, 2))
    torch.testing.assert_close(logits_mse((cls_s,), (cls_t,)), ((cls_s - cls_t) ** 2).mean().float())


@pytest.mark.parametrize("loss", ["cosine", "patient", "mse"])
def test_gradients_reach_the_student_only(loss):
    s = _h(10).float().requires_grad_()
    t = _h(11).float().requires_grad_()  # even a teacher tensor that asks for gradients gets none
    if loss == "cosine":
        value = hidden_cosine(s, t, MASK)
    elif loss == "patient":
        value = patient_cls_mse([s], [t])
    else:
        value = logits_mse((s[..., 0],), (t[..., 0],), MASK)
    value.backward()
    assert t.grad is None and s.grad is not None and s.grad.abs().sum() > 0


def test_every_strategy_preset_names_known_choices():
    from kdtool.distill.config import ATTENTION_LOSS_KINDS, SCHEDULES

    assert set(STRATEGIES) == {"tinybert", "distilbert", "pkd-skip", "pkd-last", "bilstm", "shared-projection"}
    for s in STRATEGIES.values():
        assert s.schedule in SCHEDULES and s.attention_loss in ATTENTION_LOSS_KINDS and s.reference
        on = {k for k in ("attention", "hidden", "embedding", "prediction", "hard", "cosine", "patient")
              if getattr(s, f"{k}_weight") > 0 and not (k == "attention" and s.attention_loss == "none")}
        assert on, s.name
    assert STRATEGIES["bilstm"].student == "bilstm" and STRATEGIES["distilbert"].student_init == "teacher-layers"
