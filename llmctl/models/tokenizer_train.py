"""A tokenizer trained on the training text with the `tokenizers` library (model.tokenizer.train), for
a model pre-trained from scratch, returned as a transformers PreTrainedTokenizerFast with the special
tokens its family needs:

    decoder (GPT-2, Llama, Qwen2, Mistral): <|endoftext|> as EOS, BOS and pad (padding is masked by position)
    bert (BERT, RoBERTa): [PAD] [UNK] [CLS] [SEP] [MASK], each text as [CLS] ... [SEP]
    t5: <pad> </s> <unk>, each text ending in </s>, and the sentinels <extra_id_0> ... <extra_id_99>

`char` is one token per character (nanoGPT's shakespeare_char: the vocabulary is every character of
the training text, plus the special tokens); `bpe` is byte-level BPE (GPT-2's, never an unknown
token), `unigram` SentencePiece's unigram, `wordpiece` BERT's. The texts are an iterator, read once
(char and the trainers of `tokenizers` take a stream), never the whole corpus in memory.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from llmctl.errors import DataError

T5_SENTINELS = 100
SPECIALS = {
    "decoder": {"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>", "unk_token": "<|unk|>"},
    "bert": {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
             "mask_token": "[MASK]"},
    "t5": {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"},
}


def special_tokens(family: str) -> list[str]:
    """In id order: the family's special tokens first (T5's sentinels come last, as in T5's vocabulary)."""
    return list(dict.fromkeys(SPECIALS[family].values()))


class CorpusCheck:
    """Counts the text as it streams by; refuses a corpus with no text, or a binary one (NUL bytes)."""

    def __init__(self, texts: Iterable[str], where: str):
        self.texts, self.where, self.characters = texts, where, 0

    def __iter__(self) -> Iterator[str]:
        for text in self.texts:
            if "\x00" in text:
                raise DataError(f"{self.where}: the training text holds NUL bytes, so it looks binary; a tokenizer "
                                "cannot be trained on it.", "Give UTF-8 text (.txt, jsonl, csv...).")
            self.characters += len(text.strip())
            yield text

    def check(self) -> None:
        if not self.characters:
            raise DataError(f"{self.where}: the training text is empty, so there is nothing to train a tokenizer on.",
                            "Give a training file with text in it.")


def train(kind: str, vocab_size: int | None, min_frequency: int, family: str, texts: Iterable[str], where: str):
    """The trained PreTrainedTokenizerFast; DataError for an empty or binary corpus."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = special_tokens(family)
    corpus = CorpusCheck(texts, where)
    sentinels = [f"<extra_id_{i}>" for i in range(T5_SENTINELS)] if family == "t5" else []
    unk = SPECIALS[family]["unk_token"]
    if kind == "char":
        seen: set[str] = set()
        for text in corpus:
            seen.update(text)
        corpus.check()
        alphabet = sorted(seen - set(specials))
        vocab = {token: i for i, token in enumerate(specials + alphabet)}
        tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=unk))
        tokenizer.decoder = decoders.Fuse()
    else:
        budget = vocab_size - len(sentinels)
        if budget <= len(specials):
            raise DataError(f"model.tokenizer.vocab_size {vocab_size} leaves no room past the {len(specials) + len(sentinels)} "
                            "special tokens.", "Choose a larger vocab_size.")
        if kind == "bpe":
            tokenizer = Tokenizer(models.BPE())
            tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tokenizer.decoder = decoders.ByteLevel()
            trainer = trainers.BpeTrainer(vocab_size=budget, min_frequency=min_frequency, special_tokens=specials,
                                          initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        elif kind == "unigram":
            tokenizer = Tokenizer(models.Unigram())
            tokenizer.normalizer = normalizers.NFKC()
            tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
            tokenizer.decoder = decoders.Metaspace()
            trainer = trainers.UnigramTrainer(vocab_size=budget, special_tokens=specials, unk_token=unk,
                                              show_progress=False)
        else:
            tokenizer = Tokenizer(models.WordPiece(unk_token=unk))
            tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False)
            tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
            tokenizer.decoder = decoders.WordPiece()
            trainer = trainers.WordPieceTrainer(vocab_size=budget, min_frequency=min_frequency,
                                                special_tokens=specials, show_progress=False)
        tokenizer.train_from_iterator(corpus, trainer=trainer)
        corpus.check()
    if sentinels:
        tokenizer.add_special_tokens(sentinels)
    _post_processor(tokenizer, family)
    extra = {"extra_special_tokens": sentinels} if sentinels else {}
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIALS[family], **extra)
    if wrapped.pad_token is None:
        wrapped.pad_token = wrapped.eos_token
    return wrapped


def _post_processor(tokenizer, family: str) -> None:
    """BERT's [CLS] text [SEP] and T5's text </s>; a decoder adds nothing (causal-lm appends EOS itself)."""
    from tokenizers import processors

    if family == "bert":
        cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    elif family == "t5":
        eos = tokenizer.token_to_id("</s>")
        tokenizer.post_processor = processors.TemplateProcessing(
            single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos)])
