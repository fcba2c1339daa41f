"""Every loss of distillation and fine-tuning, and the registry that makes them components of the objective.

    attention   TinyBERT's attention MSE: pre-softmax scores in closed form, or probabilities (kernels)
    states      hidden-state losses: TinyBERT's MSE, DistilBERT's cosine, Patient KD's [CLS] MSE
    logits      the soft prediction loss (KL x T^2, soft CE, raw-logit MSE) and the hard span loss
    registry    :func:`register_loss` and what is derived from the entries (weights, stages, options)
    terms       the built-in components, one function and one entry each

Every loss is masked for padding and returns a scalar; the objective weights and sums them.
"""

from kdtool.losses import terms  # noqa: F401  (registers the built-in components, in order)
from kdtool.losses.attention import (
    ATTENTION_LOSSES,
    attention_prob_mse,
    attention_prob_mse_explicit,
    attention_score_mse,
    attention_score_mse_explicit,
    group_heads,
)
from kdtool.losses.logits import PREDICTION_KINDS, logits_mse, prediction_loss, span_loss
from kdtool.losses.registry import (
    LOSSES,
    STAGES,
    LossInputs,
    LossSpec,
    loss_weights,
    projected_losses,
    reads_hidden,
    register_loss,
    stage_losses,
    weight_fields,
    with_weight_fields,
)
from kdtool.losses.states import hidden_cosine, hidden_mse, patient_cls_mse

__all__ = [
    "ATTENTION_LOSSES", "LOSSES", "PREDICTION_KINDS", "STAGES", "LossInputs", "LossSpec", "attention_prob_mse",
    "attention_prob_mse_explicit", "attention_score_mse", "attention_score_mse_explicit", "group_heads", "hidden_cosine",
    "hidden_mse", "logits_mse", "loss_weights", "patient_cls_mse", "prediction_loss", "projected_losses", "reads_hidden",
    "register_loss", "span_loss", "stage_losses", "weight_fields", "with_weight_fields",
]
