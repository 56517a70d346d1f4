"""A word-level instruction tokenizer whose vocabulary ships with the model (no downloads)."""

from __future__ import annotations

import re

PAD, UNK = "<pad>", "<unk>"
_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class WordTokenizer:
    """Lower-cased alphanumeric words -> ids; id 0 pads, id 1 is any word not in the vocabulary."""

    def __init__(self, vocabulary: list[str], max_tokens: int):
        if vocabulary[:2] != [PAD, UNK]:
            raise ValueError(f"vocabulary must start with {[PAD, UNK]}, got {vocabulary[:2]}")
        self.vocabulary = list(vocabulary)
        self.max_tokens = int(max_tokens)
        self._ids = {word: i for i, word in enumerate(self.vocabulary)}

    @classmethod
    def from_texts(cls, texts: list[str], max_tokens: int) -> "WordTokenizer":
        vocabulary = sorted({word for text in texts for word in words(text)})
        return cls([PAD, UNK, *vocabulary], max_tokens)

    def encode(self, text: str) -> list[int]:
        """Token ids padded (or cut) to ``max_tokens``."""
        ids = [self._ids.get(word, 1) for word in words(text)][: self.max_tokens]
        return ids + [0] * (self.max_tokens - len(ids))
