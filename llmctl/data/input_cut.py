"""How many characters of an input `max_length` tokens can use, and cutting inputs to that.

A 20 MB line to `predict` cost 28 s and 2.8 GB: the tokenizer splits and maps the whole text
(about 115 bytes of memory per input byte) only for truncation to keep the first `max_length`
tokens. No token covers more characters than the tokenizer's longest vocabulary entry, or a
word a WordPiece tokenizer gives up on as unknown (100 characters); twice that per token leaves
room for normalizers that drop characters (accents stripped). Text past the budget can never
reach the model, so cutting it first leaves every prediction as it was.
"""

from __future__ import annotations

_UNKNOWN_WORD = 100  # WordPiece's max_input_chars_per_word: a longer word is one [UNK] token


def char_budget(tokenizer, max_length: int) -> int:
    vocab = tokenizer.get_vocab()
    longest = max((len(token) for token in vocab), default=1)
    return 2 * max_length * max(longest, _UNKNOWN_WORD)


def cut(texts: list[str], budget: int) -> tuple[list[str], int]:
    """`texts` with each cut to `budget` characters, and how many were cut."""
    long = sum(len(t) > budget for t in texts)
    return ([t[:budget] for t in texts] if long else texts), long
