"""Tiny real components for tests: a Spanish QA set, tokenizers trained on the fly, small models.

Nothing here is mocked: the tokenizers are trained with the tokenizers library, the models are
real transformers QA models with random weights saved with ``save_pretrained``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SQUAD_ES_V11 = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad-es" / "squad-es-v1.1-pool.json"
SQUAD_ES_V20 = SQUAD_ES_V11.with_name("squad-es-v2.0-pool.json")

PEOPLE = ["María López", "Juan Pérez", "Ana Gómez", "Luis Fernández", "Carmen Ruiz", "José Martín", "Lucía Díaz", "Pedro Sánchez"]
CITIES = ["Sevilla", "Valencia", "Bilbao", "Zaragoza", "Málaga", "Granada", "Toledo", "Salamanca"]
THINGS = ["un puente", "una biblioteca", "un hospital", "un museo", "una escuela", "un teatro"]


def tiny_squad(n_articles: int = 6, per_article: int = 4, seed: int = 0) -> dict:
    """A small Spanish SQuAD v1.1 object whose answers are whole words at exact offsets."""
    rng = random.Random(seed)
    data = []
    qid = 0
    for a in range(n_articles):
        paragraphs = []
        for _ in range(per_article):
            who, city, thing = rng.choice(PEOPLE), rng.choice(CITIES), rng.choice(THINGS)
            year = str(rng.randint(1800, 2020))
            other = rng.choice([c for c in CITIES if c != city])
            context = (f"En {year}, {who} construyó {thing} en {city}. "
                       f"Años después, la obra fue visitada por viajeros de {other}, que la elogiaron «mucho».")
            qas = []
            for q, ans in ((f"¿Quién construyó {thing} en {city}?", who), (f"¿En qué año se construyó {thing}?", year),
                           (f"¿Dónde construyó {who} {thing}?", city)):
                qas.append({"id": f"q{qid}", "question": q,
                            "answers": [{"text": ans, "answer_start": context.index(ans)}]})
                qid += 1
            paragraphs.append({"context": context, "qas": qas})
        data.append({"title": f"Artículo {a}", "paragraphs": paragraphs})
    return {"version": "1.1", "data": data}


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


def corpus_texts(squad: dict) -> list[str]:
    texts = []
    for art in squad["data"]:
        for para in art["paragraphs"]:
            texts.append(para["context"])
            texts.extend(qa["question"] for qa in para["qas"])
    return texts


def tiny_qa_model(out_dir: Path, tokenizer, kind: str = "roberta", *, layers: int = 2, hidden: int = 64, heads: int = 4,
                  intermediate: int = 128, max_positions: int = 512, seed: int = 0) -> Path:
    """Save a randomly initialised ``*ForQuestionAnswering`` model with ``tokenizer`` to ``out_dir``."""
    import torch
    from transformers import AutoModelForQuestionAnswering, BertConfig, RobertaConfig

    torch.manual_seed(seed)
    common = dict(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                  intermediate_size=intermediate, pad_token_id=tokenizer.pad_token_id)
    if kind == "roberta":
        config = RobertaConfig(max_position_embeddings=max_positions + 2, bos_token_id=tokenizer.cls_token_id,
                               eos_token_id=tokenizer.sep_token_id, type_vocab_size=1, **common)
    elif kind == "bert":
        config = BertConfig(max_position_embeddings=max_positions, **common)
    else:
        raise ValueError(kind)
    config.architectures = [f"{'Roberta' if kind == 'roberta' else 'Bert'}ForQuestionAnswering"]
    model = AutoModelForQuestionAnswering.from_config(config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return Path(out_dir)
