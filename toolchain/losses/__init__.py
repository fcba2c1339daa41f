"""Every loss of distillation and fine-tuning, and the registry that makes them components of the objective.

    attention   TinyBERT's attention MSE: pre-softmax scores in closed form, or probabilities (kernels)
    states      hidden-state losses: TinyBERT's MSE, DistilBERT's cosine, Patient KD's [CLS] MSE
    logits      the soft prediction loss (KL x T^2, soft CE, raw-logit MSE) and the hard span loss
    registry    :func:`register_loss` and what is derived from the entries (weights, stages, options)
    terms       the built-in components, one function and one entry each

Every loss is masked for padding and returns a scalar; the objective weights and sums them.

Importing the package registers the built-in components without loading torch (every command's options,
``kdtool --help`` included, are made from the registry); the loss functions of ``attention``, ``logits``
and ``states`` load with their module, on first use of one of their names here.
"""

from importlib import import_module

from kdtool.losses import terms  # noqa: F401  (registers the built-in components, in order)
from kdtool.losses.registry import (
    ATTENTION_KINDS,
    LOSSES,
    PREDICTION_KINDS,
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

# name -> the module (it loads torch) that defines it, imported when the name is first asked for
_TORCH_NAMES = {
    **dict.fromkeys(("ATTENTION_LOSSES", "attention_prob_mse", "attention_prob_mse_explicit", "attention_score_mse",
                     "attention_score_mse_explicit", "group_heads"), "kdtool.losses.attention"),
    **dict.fromkeys(("logits_mse", "prediction_loss", "span_loss"), "kdtool.losses.logits"),
    **dict.fromkeys(("hidden_cosine", "hidden_mse", "patient_cls_mse"), "kdtool.losses.states"),
}


def __getattr__(name: str):
    if name not in _TORCH_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_TORCH_NAMES[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "ATTENTION_KINDS", "ATTENTION_LOSSES", "LOSSES", "PREDICTION_KINDS", "STAGES", "LossInputs", "LossSpec",
    "attention_prob_mse", "attention_prob_mse_explicit", "attention_score_mse", "attention_score_mse_explicit",
    "group_heads", "hidden_cosine", "hidden_mse", "logits_mse", "loss_weights", "patient_cls_mse", "prediction_loss",
    "projected_losses", "reads_hidden", "register_loss", "span_loss", "stage_losses", "weight_fields",
    "with_weight_fields",
]
