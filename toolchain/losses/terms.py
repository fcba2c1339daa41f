"""The built-in loss components: the hard-label and soft prediction losses on the logits, then TinyBERT's
embedding and hidden-state losses, DistilBERT's cosine, Patient KD's [CLS] loss and TinyBERT's attention
loss. The objective computes and sums the components in this registration order (and the CLI lists the
``--<name>-weight`` options in it); the order of computation fixes the order in which backward adds up
the gradients of shared tensors, so it is kept as it was when the objective had one branch per loss.

Default weights are TinyBERT's; a strategy (kdtool.strategies) overrides them. To add a loss, write
its function and one ``@register_loss`` entry like these (see :mod:`kdtool.losses.registry`).

The entries are read by every command's options, ``kdtool --help`` included, so this module does not
load torch: each component imports the torch code it calls (``attention``, ``logits``, ``states``) when
it first runs.
"""

from __future__ import annotations

from kdtool.losses.registry import LossInputs, register_loss

INTERMEDIATE_STAGES = ("intermediate", "joint")
PREDICTION_STAGES = ("prediction", "joint")


@register_loss("hard", stages=("finetune", *PREDICTION_STAGES), about="the hard-label loss", needs=("labels",))
def hard_term(x: LossInputs):
    return x.task.hard_loss(x.outputs, x.batch)


@register_loss("prediction", stages=PREDICTION_STAGES, default=1.0, about="the soft prediction loss",
               needs=("teacher_outputs",))
def prediction_term(x: LossInputs):
    from kdtool.losses.logits import prediction_loss

    return prediction_loss(x.outputs, x.targets["outputs"], x.task.soft_mask(x.batch), temperature=x.config.temperature,
                           kind=x.config.prediction_loss)


@register_loss("embedding", stages=INTERMEDIATE_STAGES, default=1.0, about="the embedding (layer 0) loss",
               needs=("hidden",), projected=True)
def embedding_term(x: LossInputs):
    from kdtool.losses.states import hidden_mse

    return hidden_mse(x.project(0, x.hidden[0]), x.targets["hidden"][0], x.mask)


@register_loss("hidden", stages=INTERMEDIATE_STAGES, default=1.0, about="the hidden-state loss", needs=("hidden",),
               projected=True)
def hidden_term(x: LossInputs):
    from kdtool.losses.states import hidden_mse

    return sum(hidden_mse(x.project(s, x.hidden[s]), x.targets["hidden"][t], x.mask) for s, t in x.layer_pairs if s > 0)


@register_loss("cosine", stages=INTERMEDIATE_STAGES, about="the cosine loss on the last hidden states (DistilBERT)",
               needs=("hidden",), projected=True)
def cosine_term(x: LossInputs):
    from kdtool.losses.states import hidden_cosine

    top = len(x.hidden) - 1
    return hidden_cosine(x.project(top, x.hidden[top]), x.targets["last_hidden"], x.mask)


@register_loss("patient", stages=INTERMEDIATE_STAGES, about="the normalised [CLS] loss over mapped layers (PKD)",
               needs=("hidden",), projected=True)
def patient_term(x: LossInputs):
    from kdtool.losses.states import patient_cls_mse

    pairs = [(s, t) for s, t in x.layer_pairs if s > 0]
    return patient_cls_mse([x.project(s, x.hidden[s]) for s, _ in pairs], [x.targets["hidden"][t] for _, t in pairs])


@register_loss("attention", stages=INTERMEDIATE_STAGES, default=1.0, about="the attention loss",
               needs=("hidden", "teacher_qk"), off_when=("attention_loss", "none"))
def attention_term(x: LossInputs):
    """TinyBERT's attention MSE (``--attention-loss`` scores or probs) summed over the mapped layers."""
    from kdtool.losses.attention import ATTENTION_LOSSES

    fn = ATTENTION_LOSSES[x.config.attention_loss]
    return sum(fn(*x.student_qk(s), *x.targets["qk"][t], x.mask) for s, t in x.layer_pairs if s > 0)
