"""The ``torch-triton`` attention backend: :func:`kdtool.kernels.fused_attention` inside HF encoders.

Loading a model with ``attn_implementation="torch-triton"`` (once this module is imported: importing
it calls :func:`register_triton_attention`) runs its self-attention through ``fused_attention``: Triton
on CUDA, the plain-PyTorch reference elsewhere, so CPU runs give the same logits as ``sdpa``.

transformers 4.57 has two attention plug points, and the name is registered with both:

- ``AttentionInterface`` (models whose attention calls ``ALL_ATTENTION_FUNCTIONS[...]``): the
  function :func:`triton_attention_forward`. Registering there is also what makes transformers
  accept the name at all.
- the per-model ``*_SELF_ATTENTION_CLASSES`` dicts of BERT-style encoders, which still pick an
  attention class by name (BERT, RoBERTa, XLM-R, CamemBERT, ELECTRA, Data2VecText): a subclass
  of each model's SDPA attention whose forward calls ``fused_attention``.

Anything the kernel does not cover falls back to SDPA: autograd (the kernel is forward-only; use
``torch.no_grad``/``inference_mode``), causal or non-padding masks, relative positions, dropout in
training, head masks, ``output_attentions``, caches, cross-attention.
"""

from __future__ import annotations

import importlib

import torch

from kdtool.kernels import TRITON_ATTENTION
from kdtool.kernels.attention import fused_attention

# (module, name of its dict of self-attention classes by attn_implementation); data, not branches.
SELF_ATTENTION_CLASS_REGISTRIES = (
    ("transformers.models.bert.modeling_bert", "BERT_SELF_ATTENTION_CLASSES"),
    ("transformers.models.roberta.modeling_roberta", "ROBERTA_SELF_ATTENTION_CLASSES"),
    ("transformers.models.xlm_roberta.modeling_xlm_roberta", "XLM_ROBERTA_SELF_ATTENTION_CLASSES"),
    ("transformers.models.camembert.modeling_camembert", "CAMEMBERT_SELF_ATTENTION_CLASSES"),
    ("transformers.models.electra.modeling_electra", "ELECTRA_SELF_ATTENTION_CLASSES"),
    ("transformers.models.data2vec.modeling_data2vec_text", "DATA2VEC_TEXT_SELF_ATTENTION_CLASSES"),
)

# Which fused_attention backend the HF adapter uses ("auto" in production; tests force "triton").
settings = {"backend": "auto"}


def padding_key_mask(attention_mask: torch.Tensor | None, batch: int, seq: int) -> tuple[bool, torch.Tensor | None]:
    """(usable, [batch, seq] key mask or None) from an HF attention mask.

    HF passes a boolean mask (True = attend) or an additive one (0 = attend, a large negative
    number = masked), shaped [batch, 1 or heads, 1 or q_len, k_len] or [batch, k_len]. It is a
    padding mask when every head and query row sees the same keys; anything else is not usable.
    """
    if attention_mask is None:
        return True, None
    if attention_mask.dim() == 2:
        mask_row = attention_mask
    elif attention_mask.dim() == 4 and attention_mask.shape[1] == 1:
        mask_row = attention_mask[:, 0, 0, :]
        if attention_mask.shape[2] > 1 and not torch.equal(attention_mask, mask_row[:, None, None, :].expand_as(attention_mask)):
            return False, None
    else:
        return False, None
    if tuple(mask_row.shape) != (batch, seq):
        return False, None
    return True, (mask_row if mask_row.dtype == torch.bool else mask_row == 0)


def triton_attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                             is_causal=None, **kwargs):
    """``AttentionInterface`` function: [B, H, N, D] q, k, v -> ([B, N, H, D] output, None)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    causal = is_causal if is_causal is not None else getattr(module, "is_causal", False)
    usable, key_mask = padding_key_mask(attention_mask, query.shape[0], key.shape[2])
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
    if (causal or not usable or needs_grad or (dropout and module.training)
            or key.shape != query.shape or value.shape != query.shape
            or kwargs.get("output_attentions") or kwargs.get("head_mask") is not None):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    out = fused_attention(query, key, value, key_mask, scale=scaling, backend=settings["backend"])
    return out.transpose(1, 2).contiguous(), None


def triton_self_attention_class(sdpa_class: type) -> type:
    """A subclass of a BERT-style ``*SdpaSelfAttention`` whose plain encoder case runs ``fused_attention``."""

    def forward(self, hidden_states, attention_mask=None, head_mask=None, encoder_hidden_states=None,
                past_key_values=None, output_attentions=False, cache_position=None, **kwargs):
        batch, seq, _ = hidden_states.shape
        usable, key_mask = padding_key_mask(attention_mask, batch, seq)
        needs_grad = torch.is_grad_enabled() and (hidden_states.requires_grad or self.query.weight.requires_grad)
        if (not usable or needs_grad or self.position_embedding_type != "absolute" or output_attentions or head_mask is not None
                or encoder_hidden_states is not None or past_key_values is not None or self.is_decoder
                or (self.training and self.dropout_prob > 0)):
            return sdpa_class.forward(self, hidden_states, attention_mask, head_mask, encoder_hidden_states,
                                      past_key_values, output_attentions, cache_position)

        def heads(layer):
            return layer(hidden_states).view(batch, seq, self.num_attention_heads, self.attention_head_size).transpose(1, 2)

        out = fused_attention(heads(self.query), heads(self.key), heads(self.value), key_mask, backend=settings["backend"])
        return out.transpose(1, 2).reshape(batch, seq, self.all_head_size), None

    name = sdpa_class.__name__.replace("Sdpa", "Triton")
    return type(name, (sdpa_class,), {"forward": forward, "__module__": __name__,
                                      "__doc__": f"{sdpa_class.__name__} running kdtool's fused_attention."})


def register_triton_attention(backend: str | None = None) -> str:
    """Register ``attn_implementation="torch-triton"`` with transformers; returns the name.

    Idempotent. ``backend`` ("auto", "triton", "reference") sets which ``fused_attention`` path
    the adapter uses; leave it None to keep the current one ("auto" unless changed).
    """
    from transformers import AttentionInterface

    if backend is not None:
        settings["backend"] = backend
    AttentionInterface.register(TRITON_ATTENTION, triton_attention_forward)
    for module_name, registry_name in SELF_ATTENTION_CLASS_REGISTRIES:
        try:
            registry = getattr(importlib.import_module(module_name), registry_name)
        except (ImportError, AttributeError):  # another transformers version: that model uses the interface
            continue
        if TRITON_ATTENTION not in registry and "sdpa" in registry:
            registry[TRITON_ATTENTION] = triton_self_attention_class(registry["sdpa"])
    return TRITON_ATTENTION


register_triton_attention()
