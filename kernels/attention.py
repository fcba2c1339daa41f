r"""Fused encoder attention for student inference: softmax(Q K^T / sqrt(d) + mask) V.

For one (batch b, head h), Q, K, V are [seq, d] and m is the key mask (1 = real token, 0 = padding):

    S[i,j] = scale * Q[i] . K[j]                         (scale = 1/sqrt(d) unless given)
    P[i,j] = m_j exp(S[i,j]) / sum_k m_k exp(S[i,k])      (padded keys get probability 0)
    O[i]   = sum_j P[i,j] V[j]

No causal mask (an encoder). Padded query rows still attend to the real keys, as with an additive
HF mask; a row whose keys are all padding (a fully padded sequence) gets O[i] = 0 instead of
NaN. The Triton kernel (``_attention_triton``) never forms S: it streams key/value tiles with an
online softmax (FlashAttention), in fp16, bf16 or fp32 (fp32 with IEEE products), any head dim
(tiles pad it to a power of two; 32 and 64 are the shapes it is tuned for) and any sequence length.
It is forward-only: under autograd ``backend="auto"`` uses the reference, which autograd can
differentiate. :mod:`kdtool.kernels.hf_attention` swaps it into Hugging Face encoders.
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

TRITON_MODULE = "kdtool.kernels._attention_triton"


def _check_inputs(q, k, v, key_mask):
    if q.dim() != 4:
        raise ValueError(f"q must be [batch, heads, seq, head_dim], got shape {list(q.shape)}")
    if k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"q, k, v must have one shape, got {list(q.shape)}, {list(k.shape)}, {list(v.shape)}")
    if key_mask is not None and tuple(key_mask.shape) != (q.shape[0], q.shape[2]):
        raise ValueError(f"key_mask must be [batch, seq] = [{q.shape[0]}, {q.shape[2]}], got {list(key_mask.shape)}")


def attention_reference(q, k, v, key_mask=None, *, scale: float | None = None) -> torch.Tensor:
    """The module docstring's attention with an explicit [B, H, N, N] map, computed in fp32."""
    _check_inputs(q, k, v, key_mask)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    scores = q.float() @ k.float().transpose(-1, -2) * scale
    if key_mask is not None:
        key_real = (key_mask != 0)[:, None, None, :]
        has_key = key_real.any(dim=-1, keepdim=True)
        scores = scores.masked_fill(~key_real, float("-inf")).masked_fill(~has_key, 0.0)
        probs = torch.softmax(scores, dim=-1).masked_fill(~key_real, 0.0)
    else:
        probs = torch.softmax(scores, dim=-1)
    return (probs @ v.float()).to(q.dtype)


def fused_attention(q, k, v, key_mask=None, *, scale: float | None = None, backend: str = "auto",
                    tiles: dict | None = None) -> torch.Tensor:
    """softmax(Q K^T * scale + mask) V for [batch, heads, seq, head_dim] q, k, v and a [batch, seq] key mask.

    ``backend``: "auto" (Triton on CUDA without autograd, else the reference), "triton" (the
    Triton interpreter on CPU tensors) or "reference". ``tiles`` ({"block_m", "block_n"}) fixes
    the tile shape instead of autotuning. Returns a tensor of q's shape and dtype.
    """
    _check_inputs(q, k, v, key_mask)
    chosen = resolve_backend(backend, q)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    if chosen == "triton" and needs_grad:
        if backend == "triton":
            raise ValueError("the Triton fused_attention kernel is forward-only; run it under torch.no_grad() "
                             "or torch.inference_mode(), or use backend='reference' for gradients")
        chosen = "reference"
    if chosen == "reference":
        return attention_reference(q, k, v, key_mask, scale=scale)
    if len({q.dtype, k.dtype, v.dtype}) != 1:
        raise ValueError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    batch, _, seq, head_dim = q.shape
    if key_mask is None:
        key_mask = torch.ones((batch, seq), dtype=torch.int32, device=q.device)
    mask_i32 = key_mask_int32(key_mask.to(q.device), batch, seq)
    impl = kernel_module(TRITON_MODULE, q)
    return impl.attention_forward(q, k, v, mask_i32, key_lengths(mask_i32), head_dim ** -0.5 if scale is None else scale,
                                  padded_head_dim(head_dim), dot_precision(q.dtype), **(tiles or {}))
