"""Real feature windows for parity checks and INT8 calibration.

From a SQuAD file when one is given (the same tokenization as inference: kdtool.data), else from
a handful of built-in Spanish and English question/context pairs, so a parity figure is always
measured on real text rather than random ids.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdtool.data import Example, FeatureConfig, load_squad, tokenize_examples

BUILTIN = [
    ("¿Quién escribió Cien años de soledad?",
     "Cien años de soledad es una novela del escritor colombiano Gabriel García Márquez, publicada en 1967 "
     "en Buenos Aires. Es considerada una obra maestra de la literatura hispanoamericana."),
    ("¿En qué año se inauguró el museo?",
     "El Museo del Prado, en Madrid, se inauguró en 1819 con el nombre de Real Museo de Pinturas. "
     "Guarda obras de Velázquez, Goya y El Greco, entre muchos otros pintores."),
    ("¿Cuál es el río más largo de España?",
     "El Tajo es el río más largo de la península ibérica: nace en la sierra de Albarracín y desemboca "
     "en el océano Atlántico, en Lisboa, tras recorrer unos mil kilómetros."),
    ("What does a distilled student model trade for speed?",
     "Knowledge distillation trains a small student network to imitate a large teacher. The student "
     "trades a little accuracy for a large gain in speed and a much smaller memory footprint."),
]


def builtin_examples() -> list[Example]:
    return [Example(id=f"builtin-{i}", question=q, context=c, answers=()) for i, (q, c) in enumerate(BUILTIN)]


def sample_windows(tokenizer, data: Path | None, n: int, max_length: int, *, batch_size: int = 1,
                   pad_to_max: bool = False) -> list[dict[str, np.ndarray]]:
    """Up to ``n`` feature windows as padded int64 batches (dict per batch)."""
    examples = list(load_squad(data).examples[: max(n, 1)]) if data else builtin_examples()
    config = FeatureConfig(max_length, min(128, max_length // 2), min(64, max_length // 4))
    feats = tokenize_examples(examples, tokenizer, config)
    idx = list(range(min(n, len(feats))))
    return [feats.batch(idx[k:k + batch_size], length=max_length if pad_to_max else None)
            for k in range(0, len(idx), batch_size)]
