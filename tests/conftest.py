"""Session fixtures: tiny real tokenizers and models shared by the whole suite."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

import tiny  # noqa: E402


@pytest.fixture(scope="session")
def squad_obj() -> dict:
    return tiny.tiny_squad()


@pytest.fixture(scope="session")
def squad_file(tmp_path_factory, squad_obj) -> Path:
    return tiny.write_json(tmp_path_factory.mktemp("data") / "tiny-squad.json", squad_obj)


@pytest.fixture(scope="session")
def bpe_tokenizer(squad_obj):
    from kdtool.tokenizer_training import train_tokenizer

    return train_tokenizer(tiny.corpus_texts(squad_obj) * 3, "bpe", vocab_size=600)


@pytest.fixture(scope="session")
def wordpiece_tokenizer(squad_obj):
    from kdtool.tokenizer_training import train_tokenizer

    return train_tokenizer(tiny.corpus_texts(squad_obj) * 3, "wordpiece", vocab_size=600)


@pytest.fixture(scope="session")
def roberta_dir(tmp_path_factory, bpe_tokenizer) -> Path:
    """A tiny random RobertaForQuestionAnswering (2 layers, hidden 64, 4 heads) with its BPE tokenizer."""
    return tiny.tiny_qa_model(tmp_path_factory.mktemp("models") / "roberta", bpe_tokenizer, "roberta")


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory, wordpiece_tokenizer) -> Path:
    """A tiny random BertForQuestionAnswering (2 layers, hidden 64, 4 heads) with its WordPiece tokenizer."""
    return tiny.tiny_qa_model(tmp_path_factory.mktemp("models") / "bert", wordpiece_tokenizer, "bert", seed=1)


@pytest.fixture(scope="session")
def squad_es_v11() -> Path:
    if not tiny.SQUAD_ES_V11.is_file():
        pytest.skip(f"real SQuAD-es data not present at {tiny.SQUAD_ES_V11}")
    return tiny.SQUAD_ES_V11


@pytest.fixture(scope="session")
def squad_es_v20() -> Path:
    if not tiny.SQUAD_ES_V20.is_file():
        pytest.skip(f"real SQuAD-es data not present at {tiny.SQUAD_ES_V20}")
    return tiny.SQUAD_ES_V20
