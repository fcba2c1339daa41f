"""Quantization-aware training: the student fake-quantized as its INT8 graph will run.

The quantizers are NVIDIA Model Optimizer's (``modelopt.torch.quantization``, TensorRT's own
quantizer, see the README's QAT section for why this library): symmetric INT8 (zero point 0),
per-output-channel weights, per-tensor activations at the input of every ``nn.Linear`` and at
the four inputs of the two attention products, Q and K of ``QK^T`` and P (softmax) and V of
``PV``. Softmax, LayerNorm, GELU and the embeddings stay in float, as in the exported graph.

Scales start from a max calibration pass over real training windows (``qat_calibration_windows``
of them, in file order, so a resumed run recalibrates to the same values before the checkpoint
overwrites them) and then stay fixed while the weights train against the FP32 teacher: Model
Optimizer's INT8 fake quantization passes gradients to the input only (straight-through), not to
the scale, so learned INT8 scales are not offered.

Saving and loading go through Model Optimizer's Hugging Face checkpointing: ``save_pretrained``
writes ``modelopt_state.pth`` (quantizer layout and scales) beside the weights and
``from_pretrained`` of such a directory rebuilds the fake-quantized model, so ``kdtool validate``
of a QAT directory scores the quantized model and ``kdtool export --precision int8-qat`` exports
exactly what was trained.
"""

from __future__ import annotations

import contextlib
import io
import math
import time

import torch
from torch import nn

from kdtool.errors import InputError

STATE_FILE = "modelopt_state.pth"  # written by modelopt's save_pretrained patch
SELF_ATTENTION_CLASSES = ("BertSelfAttention", "BertSdpaSelfAttention", "RobertaSelfAttention",
                          "RobertaSdpaSelfAttention")
ATTENTION_QUANTIZERS = ("q_bmm_quantizer", "k_bmm_quantizer", "p_bmm_quantizer", "v_bmm_quantizer")
_READY = False

# What the copy below and the patches in _patch_modelopt_globals were made against (transformers 4.57.6,
# nvidia-modelopt 0.47.0): upstream object -> (sha256 of its source, first 16 hex digits; what to re-check when it
# changes). tests/test_qat_upstream.py fails, naming what to re-check, when an installed version's source differs.
UPSTREAM = {
    "transformers.models.bert.modeling_bert.BertSelfAttention.forward": (
        "9dacb2f6d43c1edb", "_self_attention_forward, the copy: its arguments, mask and head-mask handling, the tuple "
                            "it returns"),
    "transformers.models.bert.modeling_bert.BertSdpaSelfAttention.forward": (
        "8aeba4b158d7e2f2", "_self_attention_forward replaces it too: the same arguments and result"),
    "transformers.models.roberta.modeling_roberta.RobertaSelfAttention.forward": (
        "915fd695df7e4d52", "_self_attention_forward, the copy, for RoBERTa"),
    "transformers.models.roberta.modeling_roberta.RobertaSdpaSelfAttention.forward": (
        "4202a557148be34a", "_self_attention_forward replaces it too, for RoBERTa"),
    "transformers.models.bert.modeling_bert.BertAttention.forward": (
        "11ebb12ea97906f9", "how the copy is called (keyword arguments) and how its result is unpacked"),
    "modelopt.torch.quantization.plugins.huggingface.register_hf_attentions_on_the_fly": (
        "ff2dc8c5ded079cd", "_patch_modelopt_globals removes it from CUSTOM_MODEL_PLUGINS: is it still needed, still "
                            "failing on this transformers, and still registered there?"),
    "modelopt.torch.opt.plugins.huggingface": (
        "961b6b75a4906137", "_patch_modelopt_globals silences its print_rank_0: does it still print through that "
                            "name, and does enable_huggingface_checkpointing still save modelopt_state.pth?"),
}


def _self_attention_forward(self, hidden_states, attention_mask=None, head_mask=None, encoder_hidden_states=None,
                            past_key_values=None, output_attentions=False, cache_position=None, **kwargs):
    """BERT/RoBERTa self-attention (absolute positions, encoder only) with INT8 inputs to QK^T and PV."""
    b, n, _ = hidden_states.shape

    def heads(x):
        return x.view(b, n, self.num_attention_heads, self.attention_head_size).transpose(1, 2)

    q = self.q_bmm_quantizer(heads(self.query(hidden_states)))
    k_t = self.k_bmm_quantizer(heads(self.key(hidden_states)).transpose(-1, -2))  # DQ feeds the MatMul directly
    v = self.v_bmm_quantizer(heads(self.value(hidden_states)))
    scores = torch.matmul(q, k_t) / math.sqrt(self.attention_head_size)
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = self.dropout(nn.functional.softmax(scores, dim=-1))
    if head_mask is not None:
        probs = probs * head_mask
    context = torch.matmul(self.p_bmm_quantizer(probs), v)
    context = context.permute(0, 2, 1, 3).reshape(b, n, self.all_head_size)
    return context, (probs if output_attentions else None)


def _setup_modelopt() -> None:
    """Register the quantized self-attention with Model Optimizer and turn on its HF checkpointing (once)."""
    global _READY
    if _READY:
        return
    try:
        import modelopt.torch.opt as mto
        import modelopt.torch.quantization as mtq
        from modelopt.torch.quantization.nn import QuantModule, TensorQuantizer
        from modelopt.torch.quantization.plugins import custom, huggingface
    except ImportError:
        raise InputError("quantization-aware training needs NVIDIA Model Optimizer: pip install -c constraints.txt "
                         "'kdtool[qat]' (nvidia-modelopt)") from None
    from transformers.models.bert import modeling_bert
    from transformers.models.roberta import modeling_roberta

    _patch_modelopt_globals(custom, huggingface)

    class QuantSelfAttention(QuantModule):
        def _setup(self):
            for name in ATTENTION_QUANTIZERS:
                setattr(self, name, TensorQuantizer())

        forward = _self_attention_forward

    for name in SELF_ATTENTION_CLASSES:
        cls = getattr(modeling_bert, name, None) or getattr(modeling_roberta, name, None)
        if cls is not None:
            mtq.register(original_cls=cls, quantized_cls=QuantSelfAttention)
    mto.enable_huggingface_checkpointing()
    _READY = True


def _patch_modelopt_globals(custom, huggingface) -> None:
    """The only changes kdtool makes to Model Optimizer's module globals (UPSTREAM records what they were made for):

    - its on-the-fly HF attention plugin rewrites forward() from its source and fails on transformers 4.57's
      decorated BERT forward ("Actual method must have closure"): it is removed from ``CUSTOM_MODEL_PLUGINS``, and
      the attention is quantized by ``QuantSelfAttention`` instead, with modelopt's own TensorQuantizers and names;
    - its HF checkpointing announces every save and restore with print(): silenced, kdtool's commands own stdout.
    """
    from modelopt.torch.opt.plugins import huggingface as hf_checkpointing

    custom.CUSTOM_MODEL_PLUGINS.discard(huggingface.register_hf_attentions_on_the_fly)
    hf_checkpointing.print_rank_0 = lambda *args, **kwargs: None


def quant_config() -> dict:
    """Model Optimizer's INT8 recipe restricted to Linear inputs/weights and the attention products."""
    int8_tensor = {"num_bits": 8, "axis": None}
    return {"quant_cfg": [{"quantizer_name": "*", "enable": False},
                         {"quantizer_name": "*weight_quantizer", "cfg": {"num_bits": 8, "axis": 0}},
                         {"quantizer_name": "*input_quantizer", "cfg": int8_tensor},
                         *({"quantizer_name": f"*{q}", "cfg": int8_tensor} for q in ATTENTION_QUANTIZERS),
                         *({"quantizer_name": "*", "parent_class": f"nn.{c}", "enable": False}
                           for c in ("LayerNorm", "Embedding"))],
            "algorithm": "max"}


def check_qat_student(model) -> None:
    """One-line refusal for students whose attention this module cannot quantize."""
    if getattr(model.config, "model_type", "") not in ("bert", "roberta"):
        raise InputError(f"--qat supports BERT/RoBERTa students (INT8 attention core); the student is a "
                         f"{model.config.model_type} model; drop --qat (kdtool export --precision int8 quantizes it "
                         "dynamically)")
    if getattr(model.config, "position_embedding_type", "absolute") != "absolute":
        raise InputError(f"--qat needs absolute position embeddings; the student uses "
                         f"{model.config.position_embedding_type}")


def quantize_model(model, batches, *, device="cpu") -> dict:
    """Insert the quantizers into ``model`` (in place) and calibrate them on ``batches`` of model inputs."""
    check_qat_student(model)
    _setup_modelopt()
    import modelopt.torch.quantization as mtq

    was_training = model.training
    model.to(device).eval()

    def forward_loop(m):
        with torch.no_grad():
            for batch in batches:
                m(**{k: v.to(device) for k, v in batch.items()})

    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # "Inserted N quantizers"
        mtq.quantize(model, quant_config(), forward_loop)
    model.train(was_training)
    quantizers = [(n, q) for n, q in model.named_modules() if type(q).__name__ == "TensorQuantizer" and q.is_enabled]
    return {"library": "nvidia-modelopt", "scheme": "int8 symmetric: per-channel weights, per-tensor activations",
            "quantizers": len(quantizers),
            "attention_quantizers": sum(n.rsplit(".", 1)[-1] in ATTENTION_QUANTIZERS for n, _ in quantizers),
            "calibration": "max", "calibration_windows": int(sum(len(b["input_ids"]) for b in batches)),
            "calibration_seconds": round(time.perf_counter() - t0, 2), "learned_scales": False}


def calibration_batches(features, n: int, batch_size: int) -> list[dict[str, torch.Tensor]]:
    """The first ``n`` training windows as model-input batches (deterministic, so resume recalibrates alike)."""
    from kdtool.models import MODEL_INPUTS

    idx = list(range(min(n, len(features))))
    batches = (features.batch(idx[i:i + batch_size]) for i in range(0, len(idx), batch_size))
    return [{k: torch.from_numpy(b[k]) for k in MODEL_INPUTS if k in b} for b in batches]


def is_qat_dir(path) -> bool:
    from pathlib import Path

    return (Path(path) / STATE_FILE).is_file()


def enable_loading(path):
    """Around ``from_pretrained`` of a QAT directory: modelopt rebuilds its quantizers (quietly)."""
    if not is_qat_dir(path):
        return contextlib.nullcontext()
    _setup_modelopt()
    return contextlib.redirect_stdout(io.StringIO())


def attention_scale_summary(model) -> dict[str, float]:
    """amax of every enabled quantizer (for reports and tests): name -> max over channels."""
    out = {}
    for name, q in model.named_modules():
        if type(q).__name__ == "TensorQuantizer" and q.is_enabled and q.amax is not None:
            out[name] = float(q.amax.max())
    return out
