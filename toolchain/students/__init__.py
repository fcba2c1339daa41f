"""kdtool's own student architectures, registered with the transformers Auto classes.

Importing this package registers every model type below with ``AutoConfig`` and the task's
``AutoModelFor*`` classes, so ``from_pretrained`` / ``save_pretrained`` on their directories work
without ``trust_remote_code`` (the code is kdtool's, not the checkpoint's). :mod:`kdtool.models`
imports it before it loads any config, so every kdtool path that opens a model sees them.

    kdtool-bilstm   BiLSTM student: QA span head or max-pooled pair classifier (kdtool.students.bilstm)
"""

from __future__ import annotations

_REGISTERED = False


def register() -> None:
    """Register kdtool's model types with the transformers Auto classes (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import AutoConfig, AutoModelForQuestionAnswering, AutoModelForSequenceClassification

    from kdtool.students.bilstm import MODEL_TYPE, BiLSTMConfig, BiLSTMForQuestionAnswering, BiLSTMForSequenceClassification

    AutoConfig.register(MODEL_TYPE, BiLSTMConfig, exist_ok=True)
    AutoModelForQuestionAnswering.register(BiLSTMConfig, BiLSTMForQuestionAnswering, exist_ok=True)
    AutoModelForSequenceClassification.register(BiLSTMConfig, BiLSTMForSequenceClassification, exist_ok=True)
    _REGISTERED = True


register()
