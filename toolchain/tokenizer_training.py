"""Training a fast tokenizer from text: byte-level BPE (RoBERTa style) or WordPiece (BERT style).

The demo trains its own tokenizer so that it needs nothing from a model hub, and the test suite
builds tiny models around tokenizers trained on the fly.
"""

from __future__ import annotations

from collections.abc import Iterable

ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
GPT2_SPLIT_ONE_DIGIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def train_tokenizer(texts: Iterable[str], kind: str = "bpe", vocab_size: int = 2000, *, lowercase: bool = False,
                    split_digits: bool = False):
    """A ``PreTrainedTokenizerFast`` (RobertaTokenizerFast or BertTokenizerFast) trained on ``texts``.

    ``split_digits`` makes every digit its own token (as LLaMA's and T5's tokenizers do for numbers), so
    a year or a count is always the same kind of token sequence instead of whatever pieces BPE merged;
    a small model trained from scratch then finds number answers and their boundaries far more easily.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast, RobertaTokenizerFast

    texts = list(texts)
    if kind == "bpe":
        tok = Tokenizer(models.BPE())
        if split_digits:  # GPT-2's split with one digit per piece (" ?\p{N}" for " ?\p{N}+"): " 1704" -> "Ġ1" "7" "0" "4"
            tok.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Split(Regex(GPT2_SPLIT_ONE_DIGIT), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        else:
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        # show_progress=False: library code draws nothing (its bars leave blank lines in a log)
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=ROBERTA_SPECIALS, min_frequency=1,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tok.train_from_iterator(texts, trainer)
        tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")),
                                                          trim_offsets=True, add_prefix_space=False)
        return RobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                    cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                    model_max_length=512)
    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=False if not lowercase else None)
        bert = pre_tokenizers.BertPreTokenizer()
        tok.pre_tokenizer = (pre_tokenizers.Sequence([bert, pre_tokenizers.Digits(individual_digits=True)])
                             if split_digits else bert)
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=BERT_SPECIALS, min_frequency=1,
                                            show_progress=False)
        tok.train_from_iterator(texts, trainer)
        cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
        return BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                                 cls_token="[CLS]", mask_token="[MASK]", do_lower_case=lowercase, model_max_length=512)
    raise ValueError(f"unknown tokenizer kind {kind!r}; use 'bpe' or 'wordpiece'")
