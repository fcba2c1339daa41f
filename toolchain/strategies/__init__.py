"""Distillation strategies of the survey (Yang, "Comparative analysis of strategies of knowledge
distillation on BERT for text matching") as presets of the one trainer's configuration.

A :class:`Strategy` is data: which losses are on and their weights, the schedule, the layer map,
the projection, the student and how it is initialised. ``kdtool distill --strategy NAME`` starts
from the preset; every option given explicitly overrides it (:class:`kdtool.distill.DistillConfig`
resolves fields left at ``None`` from the preset). No strategy has a training loop of its own.

Loss components (their ``<name>_weight`` fields come from the registry of kdtool.losses, with
TinyBERT's weights as defaults):
attention (TinyBERT scores MSE), hidden (MSE through the projection, mapped layers), embedding
(layer 0), cosine (1 - cos of the last hidden states, DistilBERT), patient (normalised [CLS] MSE over
mapped layers, PKD), prediction (soft loss on logits: kl = KL x T^2, soft-ce, or mse on raw logits),
hard (the gold labels).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from kdtool.errors import InputError
from kdtool.losses import with_weight_fields


@dataclass(frozen=True)
@with_weight_fields(after="temperature", preset=True)
class Strategy:
    name: str
    about: str
    reference: str
    schedule: str = "two-stage"
    attention_loss: str = "scores"
    layer_map: str = "uniform"  # uniform (k -> k*T/S), skip (uniform without the top layer), last (T-S+k), or pairs
    projection: str = "shared"
    prediction_loss: str = "kl"
    temperature: float = 1.0
    # one ``<loss>_weight: float`` per loss of kdtool.losses here, defaulting to the loss's own (TinyBERT's)
    student: str | None = None  # None: DistillConfig's default student
    student_init: str = "random"

    def config_defaults(self) -> dict:
        """The DistillConfig fields this strategy sets."""
        skip = {"name", "about", "reference"}
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        if out["student"] is None:
            del out["student"]
        return out


STRATEGIES: dict[str, Strategy] = {s.name: s for s in [
    Strategy("tinybert", "attention + hidden + embedding losses, then soft logits (two stages)",
             "Jiao et al. 2020"),
    Strategy("distilbert", "student from every other teacher layer; soft CE at T=2 (KL x T^2), hard labels and a "
             "cosine loss on the last hidden states, summed in one stage (weights 5:2:1 as DistilBERT's code)",
             "Sanh et al. 2019", schedule="joint", attention_loss="none", projection="none", temperature=2.0,
             hidden_weight=0.0, embedding_weight=0.0, prediction_weight=5.0, hard_weight=2.0, cosine_weight=1.0,
             student_init="teacher-layers"),
    Strategy("pkd-skip", "normalised [CLS] states of every k-th teacher layer (MSE, beta=100), soft CE at T=5 and "
             "hard labels (alpha=0.5); student from the teacher's bottom layers",
             "Sun et al. 2019", schedule="joint", attention_loss="none", layer_map="skip", projection="none",
             prediction_loss="soft-ce", temperature=5.0, hidden_weight=0.0, embedding_weight=0.0,
             prediction_weight=0.5, hard_weight=0.5, patient_weight=100.0, student_init="teacher-bottom"),
    Strategy("pkd-last", "as pkd-skip, with the last k teacher layers", "Sun et al. 2019", schedule="joint",
             attention_loss="none", layer_map="last", projection="none", prediction_loss="soft-ce", temperature=5.0,
             hidden_weight=0.0, embedding_weight=0.0, prediction_weight=0.5, hard_weight=0.5, patient_weight=100.0,
             student_init="teacher-bottom"),
    Strategy("bilstm", "a BiLSTM student (embedding from the teacher's, projected) learns the teacher's logits "
             "with MSE (cached teacher logits, one stage)", "Tang et al. 2019; Mukherjee & Awadallah 2019",
             schedule="prediction", attention_loss="none", projection="none", prediction_loss="mse",
             hidden_weight=0.0, embedding_weight=0.0, student="bilstm", student_init="teacher-embeddings"),
    Strategy("shared-projection", "a narrower student; every layer's hidden states (embeddings included) are "
             "up-projected by one shared matrix and matched to the teacher's (MSE), then soft + hard logits. "
             "No mixed-vocabulary dual training: the student uses the teacher's tokenizer",
             "Zhao et al. 2020 (DualTrain+SharedProj, up-projection)", attention_loss="none", projection="shared",
             hard_weight=1.0, student="half-width", student_init="random"),
]}


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise InputError(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}") from None


__all__ = ["STRATEGIES", "Strategy", "get_strategy"]
