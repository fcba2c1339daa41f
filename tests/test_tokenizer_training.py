"""Tokenizers trained on the fly: digits one per token when asked, offsets that still point at the text."""

import pytest

from kdtool.tokenizer_training import train_tokenizer

TEXTS = ["En 1704, Ana Ruiz vio 477 curiosos en Cádiz.", "En el año 1999 llegaron 12 invitados a Lima."] * 30


@pytest.mark.parametrize("kind", ["bpe", "wordpiece"])
def test_split_digits_gives_one_token_per_digit_with_exact_offsets(kind):
    tok = train_tokenizer(TEXTS, kind, 300, split_digits=True)
    text = "Ana vio 1704 curiosos en 477."
    enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
    pieces = [text[a:b].strip() for a, b in enc["offset_mapping"]]
    assert [p for p in pieces if p.isdigit()] == list("1704477")  # each digit alone, none merged, none lost
    assert "".join(pieces) == text.replace(" ", "")  # offsets cover the text exactly


def test_without_split_digits_bpe_merges_numbers_it_has_seen():
    tok = train_tokenizer(TEXTS, "bpe", 1000)
    text = "Ana vio 1704."
    enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
    assert "1704" in [text[a:b] for a, b in enc["offset_mapping"]]  # a frequent number is one token
