"""A BiLSTM student (Tang et al. 2019; Mukherjee & Awadallah 2019) as Hugging Face models.

    embedding (the teacher's vocabulary) -> bidirectional LSTM (1+ layers) -> head
    QA:       a linear span head on every token        -> start_logits, end_logits  [batch, seq]
    matching: max-pool over the valid tokens -> MLP    -> logits                    [batch, labels]

It reads the teacher's tokenization (``input_ids``, ``attention_mask``; ``token_type_ids`` is accepted
and ignored), so features, post-processing, engines and bundles are the transformer students' own.

Padding: the backward direction runs over each sequence reversed *within its length* (a gather with
indices ``len-1-t`` for ``t < len``), so right padding never reaches a real token in either
direction, and the model exports to ONNX as plain LSTM + Gather ops with dynamic batch and length
(:mod:`kdtool.students.bilstm_onnx`). Initial states are zeros built from the input's shape.

``init_embeddings_from_teacher`` sets the embedding to the teacher's token embeddings projected onto
their top ``embedding_size`` right-singular directions (a copy when the widths are equal).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import QuestionAnsweringModelOutput, SequenceClassifierOutput

MODEL_TYPE = "kdtool-bilstm"


class BiLSTMConfig(PretrainedConfig):
    model_type = MODEL_TYPE

    def __init__(self, vocab_size: int = 30522, embedding_size: int = 256, hidden_size: int = 256,
                 num_hidden_layers: int = 1, dropout: float = 0.1, classifier_size: int = 256,
                 max_position_embeddings: int = 512, pad_token_id: int = 0, **kwargs):
        self.vocab_size, self.embedding_size, self.hidden_size = vocab_size, embedding_size, hidden_size
        self.num_hidden_layers, self.dropout, self.classifier_size = num_hidden_layers, dropout, classifier_size
        self.max_position_embeddings = max_position_embeddings  # no limit of its own: the teacher's windows
        super().__init__(pad_token_id=pad_token_id, **kwargs)


def reverse_within_length(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x[b, len_b-1-t]`` for ``t < len_b``, ``x[b, t]`` elsewhere (an involution: applying it twice is identity)."""
    n = x.shape[1]
    lengths = mask.long().sum(1, keepdim=True)
    t = torch.arange(n, device=x.device).unsqueeze(0)
    idx = torch.where(t < lengths, lengths - 1 - t, t)
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class BiLSTMLayer(nn.Module):
    def __init__(self, d_in: int, hidden: int):
        super().__init__()
        self.forward_lstm = nn.LSTM(d_in, hidden, batch_first=True)
        self.backward_lstm = nn.LSTM(d_in, hidden, batch_first=True)

    def _run(self, lstm: nn.LSTM, x: torch.Tensor) -> torch.Tensor:
        h0 = x.new_zeros(1, x.shape[0], lstm.hidden_size)
        return lstm(x, (h0, h0))[0]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        fwd = self._run(self.forward_lstm, x)
        bwd = reverse_within_length(self._run(self.backward_lstm, reverse_within_length(x, mask)), mask)
        return torch.cat([fwd, bwd], dim=-1)


class BiLSTMPreTrainedModel(PreTrainedModel):
    config_class = BiLSTMConfig
    base_model_prefix = "bilstm"
    main_input_name = "input_ids"
    _supports_sdpa = True  # no attention at all: any attention implementation a caller asks for is moot

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.1)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()


class BiLSTMModel(BiLSTMPreTrainedModel):
    def __init__(self, config: BiLSTMConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        widths = [config.embedding_size] + [2 * config.hidden_size] * (config.num_hidden_layers - 1)
        self.layers = nn.ModuleList(BiLSTMLayer(w, config.hidden_size) for w in widths)
        self.dropout = nn.Dropout(config.dropout)
        self.post_init()

    def get_input_embeddings(self):
        return self.embeddings

    def set_input_embeddings(self, value):
        self.embeddings = value

    def forward(self, input_ids, attention_mask=None, output_hidden_states: bool = False):
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        h = self.dropout(self.embeddings(input_ids))
        states = [h]
        for layer in self.layers:
            h = self.dropout(layer(h, mask))
            states.append(h)
        return h, (tuple(states) if output_hidden_states else None)


class BiLSTMForQuestionAnswering(BiLSTMPreTrainedModel):
    def __init__(self, config: BiLSTMConfig):
        super().__init__(config)
        self.bilstm = BiLSTMModel(config)
        self.qa_outputs = nn.Linear(2 * config.hidden_size, 2)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, start_positions=None, end_positions=None,
                output_hidden_states: bool = False, return_dict: bool = True, **_):
        h, states = self.bilstm(input_ids, attention_mask, output_hidden_states)
        start, end = self.qa_outputs(h).unbind(-1)
        loss = None
        if start_positions is not None and end_positions is not None:
            ce = nn.CrossEntropyLoss()
            loss = (ce(start, start_positions) + ce(end, end_positions)) / 2
        return QuestionAnsweringModelOutput(loss=loss, start_logits=start, end_logits=end, hidden_states=states)


class BiLSTMForSequenceClassification(BiLSTMPreTrainedModel):
    def __init__(self, config: BiLSTMConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.bilstm = BiLSTMModel(config)
        self.classifier = nn.Sequential(nn.Linear(2 * config.hidden_size, config.classifier_size), nn.ReLU(),
                                        nn.Dropout(config.dropout), nn.Linear(config.classifier_size, config.num_labels))
        self.post_init()

    def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None, output_hidden_states: bool = False,
                return_dict: bool = True, **_):
        h, states = self.bilstm(input_ids, attention_mask, output_hidden_states)
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        pooled = h.masked_fill(mask.unsqueeze(-1) == 0, torch.finfo(h.dtype).min).max(dim=1).values
        logits = self.classifier(pooled)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=states)


@torch.no_grad()
def init_embeddings_from_teacher(student: BiLSTMPreTrainedModel, teacher) -> dict:
    """Teacher token embeddings projected to the student's embedding width (top right-singular directions)."""
    source = teacher.get_input_embeddings().weight.detach().float()
    target = student.get_input_embeddings().weight
    if source.shape[0] != target.shape[0]:
        raise ValueError(f"vocabularies differ: teacher {source.shape[0]}, student {target.shape[0]}")
    width = target.shape[1]
    if width == source.shape[1]:
        target.copy_(source)
        return {"embedding_init": "teacher copy", "explained_variance": 1.0}
    if width > source.shape[1]:
        raise ValueError(f"student embedding width {width} exceeds the teacher's {source.shape[1]}")
    _, s, vh = torch.linalg.svd(source, full_matrices=False)
    target.copy_(source @ vh[:width].T)
    return {"embedding_init": f"teacher projected {source.shape[1]}->{width} (SVD)",
            "explained_variance": round(float((s[:width] ** 2).sum() / (s ** 2).sum()), 4)}
