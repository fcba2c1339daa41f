"""The students ``--student`` names, as data: transformer shapes, shapes derived from the teacher's, and
other architectures. Light (no torch), so the command-line help can list them; building a student from
one of these names is :func:`kdtool.distill.students.build_student`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StudentShape:
    layers: int
    hidden: int
    heads: int
    intermediate: int
    about: str = ""

    def config_overrides(self) -> dict:
        return {"num_hidden_layers": self.layers, "hidden_size": self.hidden, "num_attention_heads": self.heads,
                "intermediate_size": self.intermediate}


PRESETS: dict[str, StudentShape] = {
    "tinyroberta-es": StudentShape(6, 512, 16, 3072, "SpanishTinyRoBERTa, the paper's student (51M with a 50k vocabulary)"),
    "tinybert-6l": StudentShape(6, 768, 12, 3072, "TinyBERT-6 / DistilBERT shape"),
    "tinybert-4l": StudentShape(4, 312, 12, 1200, "TinyBERT-4"),
    "small-4l-256": StudentShape(4, 256, 4, 1024, "a small student"),
    "micro-2l-128": StudentShape(2, 128, 2, 512, "a very small student for smoke tests"),
}

# shapes derived from the base model's config: name -> (layers, hidden, heads, intermediate) from it
RELATIVE_PRESETS = {
    "half-width": ("the teacher's depth at half its width, heads and FFN (DualTrain+SharedProj's narrower student)",
                   lambda c: StudentShape(c.num_hidden_layers, c.hidden_size // 2, max(1, c.num_attention_heads // 2),
                                          c.intermediate_size // 2)),
}


# non-transformer students: name -> what it is (kdtool.distill.students.BUILDERS builds each)
ARCHITECTURES = {
    "bilstm": "BiLSTM: embedding 256, one bidirectional LSTM layer of 256 per direction, task head",
}
