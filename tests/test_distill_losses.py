"""Distillation losses against their explicit definitions (TinyBERT's own computation)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdtool.losses import (
    attention_prob_mse,
    attention_prob_mse_explicit,
    attention_score_mse,
    attention_score_mse_explicit,
    group_heads,
    hidden_mse,
    prediction_loss,
    span_loss,
)


def qk(b, h, n, d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, h, n, d, generator=g, dtype=dtype), torch.randn(b, h, n, d, generator=g, dtype=dtype))


def padded_mask(b, n, lengths):
    m = torch.zeros(b, n)
    for i, k in enumerate(lengths):
        m[i, :k] = 1
    return m


@pytest.mark.parametrize("hs,ht,ds,dt", [(4, 4, 16, 16), (4, 4, 8, 32), (2, 8, 16, 16), (4, 16, 32, 64), (1, 3, 5, 7)])
def test_closed_form_equals_tinybert_explicit_value_and_gradient(hs, ht, ds, dt):
    b, n = 3, 13
    sq, sk = qk(b, hs, n, ds, 0)
    tq, tk = qk(b, ht, n, dt, 1)
    mask = padded_mask(b, n, [13, 9, 4])
    sq1, sk1 = sq.clone().requires_grad_(), sk.clone().requires_grad_()
    sq2, sk2 = sq.clone().requires_grad_(), sk.clone().requires_grad_()
    closed = attention_score_mse(sq1, sk1, tq, tk, mask)
    explicit = attention_score_mse_explicit(sq2, sk2, tq, tk, mask)
    torch.testing.assert_close(closed, explicit, rtol=2e-5, atol=1e-6)
    closed.backward()
    explicit.backward()
    torch.testing.assert_close(sq1.grad, sq2.grad, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(sk1.grad, sk2.grad, rtol=1e-4, atol=1e-7)


def test_closed_form_keeps_float64_inputs_in_float64():
    b, n = 2, 11
    sq, sk = (t.double() for t in qk(b, 4, n, 8, 0))
    tq, tk = (t.double() for t in qk(b, 8, n, 16, 1))
    mask = padded_mask(b, n, [11, 6]).double()
    closed = attention_score_mse(sq, sk, tq, tk, mask)
    assert closed.dtype == torch.float64
    torch.testing.assert_close(closed, attention_score_mse_explicit(sq, sk, tq, tk, mask), rtol=1e-12, atol=0)


def test_explicit_reference_is_tinyberts_formula_written_out():
    b, h, n, d = 2, 2, 6, 4
    sq, sk = qk(b, h, n, d, 2)
    tq, tk = qk(b, h, n, d, 3)
    mask = padded_mask(b, n, [6, 3])
    def tinybert(q, k):
        s = q @ k.transpose(-1, -2) / math.sqrt(d) + (1.0 - mask[:, None, None, :].double()) * -10000.0
        return torch.where(s <= -1e2, torch.zeros_like(s), s)
    expected = F.mse_loss(tinybert(sq, sk), tinybert(tq, tk))
    torch.testing.assert_close(attention_score_mse(sq, sk, tq, tk, mask).double(), expected, rtol=1e-5, atol=1e-7)


def test_padded_query_rows_count_as_in_tinybert():
    """Only the padded query rows differ: TinyBERT does not mask query rows, so the loss is not zero."""
    b, h, n, d = 1, 2, 8, 4
    sq, sk = qk(b, h, n, d, 4)
    mask = padded_mask(b, n, [5])
    tq = sq.clone()
    tq[:, :, 5:] += 1.0  # change only the padded query rows
    loss = attention_score_mse(sq, sk, tq, sk, mask)
    assert loss > 1e-3
    torch.testing.assert_close(loss, attention_score_mse_explicit(sq, sk, tq, sk, mask), rtol=1e-5, atol=1e-7)
    # ... while masked keys drop out entirely
    tk = sk.clone()
    tk[:, :, 5:] += 5.0
    assert attention_score_mse(sq, sk, sq, tk, mask).item() == pytest.approx(0.0, abs=1e-6)


def test_identical_inputs_give_zero_even_with_large_values():
    sq, sk = qk(2, 4, 32, 16, 5, dtype=torch.float32)
    sq, sk = sq * 30, sk * 30
    mask = padded_mask(2, 32, [32, 20])
    assert attention_score_mse(sq, sk, sq, sk, mask).abs().item() < 1e-2 * attention_score_mse(sq, sk, sk, sq, mask).item()


def test_group_heads_is_the_mean_of_the_groups_score_maps():
    q, k = qk(2, 6, 5, 4, 6)
    gq, gk = group_heads(q, k, 3)
    maps = (q @ k.transpose(-1, -2) / 2.0).view(2, 2, 3, 5, 5).mean(2)
    torch.testing.assert_close(gq @ gk.transpose(-1, -2), maps)


def test_closed_form_never_forms_a_seq_by_seq_map():
    # 60k positions: one explicit fp32 map would take 14 GB; the closed form needs a few MB
    n = 60_000
    sq, sk = qk(1, 1, n, 4, 7, dtype=torch.float32)
    tq, tk = qk(1, 2, n, 4, 8, dtype=torch.float32)
    loss = attention_score_mse(sq, sk, tq, tk, torch.ones(1, n))
    assert torch.isfinite(loss)


def test_unpairable_heads_raise():
    sq, sk = qk(1, 3, 4, 4, 9)
    tq, tk = qk(1, 4, 4, 4, 10)
    with pytest.raises(ValueError, match="multiple"):
        attention_score_mse(sq, sk, tq, tk, torch.ones(1, 4))


def test_probability_mse_counts_valid_rows_only_and_falls_back_to_explicit():
    b, h, n, d = 2, 2, 7, 4
    sq, sk = qk(b, h, n, d, 11)
    tq, tk = qk(b, h, n, d, 12)
    mask = padded_mask(b, n, [7, 4])
    bias = (1 - mask[:, None, None, :].double()) * -1e9
    ps = torch.softmax(sq @ sk.transpose(-1, -2) / 2 + bias, -1)
    pt = torch.softmax(tq @ tk.transpose(-1, -2) / 2 + bias, -1)
    rows = [(i, r) for i in range(b) for r in range(int(mask[i].sum()))]
    expected = sum(((ps[i, :, r] - pt[i, :, r]) ** 2).sum() for i, r in rows) / (len(rows) * h * n)
    torch.testing.assert_close(attention_prob_mse_explicit(sq, sk, tq, tk, mask).double(), expected, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(attention_prob_mse(sq.float(), sk.float(), tq.float(), tk.float(), mask),
                               expected.float(), rtol=1e-4, atol=1e-7)


def test_hidden_mse_ignores_padding():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 6, 8, generator=g), torch.randn(2, 6, 8, generator=g)
    mask = padded_mask(2, 6, [6, 3])
    base = hidden_mse(s, t, mask)
    s2 = s.clone()
    s2[1, 3:] = 100.0
    assert hidden_mse(s2, t, mask) == base
    per_example = [((s[0] - t[0]) ** 2).mean(), ((s[1, :3] - t[1, :3]) ** 2).mean()]
    torch.testing.assert_close(base, sum(per_example) / 2)


def test_prediction_loss_kl_soft_ce_masking_and_temperature():
    g = torch.Generator().manual_seed(1)
    s = (torch.randn(3, 10, generator=g), torch.randn(3, 10, generator=g))
    t = (torch.randn(3, 10, generator=g), torch.randn(3, 10, generator=g))
    mask = padded_mask(3, 10, [10, 7, 5])
    assert prediction_loss(t, t, mask).item() == pytest.approx(0.0, abs=1e-6)
    kl = prediction_loss(s, t, mask, temperature=2.0)
    noisy = tuple(x.clone() for x in s)
    for x in noisy:
        x[2, 5:] = 50.0  # padding of the student must not matter
    assert prediction_loss(noisy, t, mask, temperature=2.0).item() == pytest.approx(kl.item(), rel=1e-6)
    # KL x T^2 against torch's kl_div on the valid positions of each row
    expected = 0.0
    for si, ti in zip(s, t, strict=True):
        for row in range(3):
            k = int(mask[row].sum())
            expected += F.kl_div(F.log_softmax(si[row, :k] / 2, -1), F.log_softmax(ti[row, :k] / 2, -1),
                                 log_target=True, reduction="sum") * 4 / 3
    torch.testing.assert_close(kl, expected / 2, rtol=1e-5, atol=1e-6)
    soft = prediction_loss(s, t, mask, kind="soft-ce")
    entropy = sum(-(F.softmax(ti[r, :int(mask[r].sum())], -1) * F.log_softmax(ti[r, :int(mask[r].sum())], -1)).sum()
                  for ti in t for r in range(3)) / 6
    torch.testing.assert_close(soft, prediction_loss(s, t, mask) + entropy, rtol=1e-5, atol=1e-6)


def test_span_loss_is_cross_entropy_over_valid_positions():
    g = torch.Generator().manual_seed(2)
    start, end = torch.randn(2, 8, generator=g), torch.randn(2, 8, generator=g)
    sp, ep = torch.tensor([1, 2]), torch.tensor([3, 2])
    full = torch.ones(2, 8)
    expected = (F.cross_entropy(start, sp) + F.cross_entropy(end, ep)) / 2
    torch.testing.assert_close(span_loss(start, end, sp, ep, full), expected)
    mask = padded_mask(2, 8, [8, 4])
    expected = (F.cross_entropy(start[1, :4][None], sp[1:]) + F.cross_entropy(end[1, :4][None], ep[1:])
                + F.cross_entropy(start[:1], sp[:1]) + F.cross_entropy(end[:1], ep[:1])) / 4
    torch.testing.assert_close(span_loss(start, end, sp, ep, mask), expected)
