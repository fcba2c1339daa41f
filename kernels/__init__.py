"""kdtool.kernels: fused attention kernels (Triton), each with a plain-PyTorch reference beside it.

- :func:`attention_prob_mse`, :func:`attention_prob_kl`: attention-map distillation losses on
  post-softmax probabilities, forward and backward without [seq, seq] maps.
- :func:`fused_attention`: encoder attention for student inference.
- :func:`register_triton_attention`: the ``attn_implementation="torch-triton"`` backend for
  Hugging Face BERT/RoBERTa-style encoders.

Each dispatches to Triton for CUDA tensors and to the reference elsewhere (``backend=`` overrides).
triton is imported only when a Triton kernel runs, transformers only with the HF adapter.
"""

from kdtool.kernels.attention import attention_reference, fused_attention
from kdtool.kernels.attention_loss import attention_prob_kl, attention_prob_loss_reference, attention_prob_mse

TRITON_ATTENTION = "torch-triton"


def __getattr__(name):  # the HF adapter imports transformers, so it loads only when asked for
    if name == "register_triton_attention":
        from kdtool.kernels.hf_attention import register_triton_attention

        return register_triton_attention
    raise AttributeError(f"module 'kdtool.kernels' has no attribute {name!r}")

__all__ = ["attention_prob_mse", "attention_prob_kl", "attention_prob_loss_reference", "fused_attention",
           "attention_reference", "register_triton_attention", "TRITON_ATTENTION"]
