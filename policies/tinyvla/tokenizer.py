"""Instruction tokenizers whose vocabulary ships with the model (no downloads).

- ``WordTokenizer``: lower-cased words of a closed vocabulary (TinyVLA on the suite's five tasks:
  any word it did not see in training is ``<unk>``).
- ``ByteBPETokenizer``: byte-level byte-pair encoding from Hugging Face's ``tokenizers`` (the
  GPT-2 scheme): trained on instruction texts, it still encodes any text, an unseen word as
  the byte pieces it is made of (the LIBERO reference model).

Both give ``max_tokens`` ids per text (cut, or padded with id 0) and a ``vocab_size``; a
checkpoint stores ``to_dict()`` and ``tokenizer_from_dict`` rebuilds the right one.
"""

from __future__ import annotations

import json
import re

PAD, UNK = "<pad>", "<unk>"
_WORD = re.compile(r"[a-z0-9]+")
TOKENIZER_KINDS = ("word", "byte_bpe")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class WordTokenizer:
    """Lower-cased alphanumeric words -> ids; id 0 pads, id 1 is any word not in the vocabulary."""

    kind = "word"

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

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    def encode(self, text: str) -> list[int]:
        """Token ids padded (or cut) to ``max_tokens``."""
        ids = [self._ids.get(word, 1) for word in words(text)][: self.max_tokens]
        return ids + [0] * (self.max_tokens - len(ids))

    def unknown_words(self, texts: list[str]) -> list[str]:
        return sorted({w for text in texts for w in words(text)} - set(self.vocabulary))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "max_tokens": self.max_tokens, "vocabulary": self.vocabulary}


class ByteBPETokenizer:
    """Byte-level BPE (``tokenizers``): lower-cased text, split on whitespace and punctuation,
    then merged byte pieces; id 0 pads. Every text encodes (no unknown words)."""

    kind = "byte_bpe"

    def __init__(self, tokenizer_json: str, max_tokens: int):
        from tokenizers import Tokenizer

        self._json = tokenizer_json
        self._tokenizer = Tokenizer.from_str(tokenizer_json)
        if self._tokenizer.token_to_id(PAD) != 0:
            raise ValueError(f"byte-level BPE tokenizer: {PAD!r} must have id 0 (the padding id)")
        self.max_tokens = int(max_tokens)

    @classmethod
    def from_texts(cls, texts: list[str], max_tokens: int, vocab_size: int = 512) -> "ByteBPETokenizer":
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        tokenizer = Tokenizer(models.BPE())
        tokenizer.normalizer = normalizers.Lowercase()
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        tokenizer.train_from_iterator(texts, trainer)
        return cls(tokenizer.to_str(), max_tokens)

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size()

    def pieces(self, text: str) -> list[str]:
        return self._tokenizer.encode(text).tokens

    def encode(self, text: str) -> list[int]:
        """Token ids padded (or cut) to ``max_tokens``."""
        ids = self._tokenizer.encode(text).ids[: self.max_tokens]
        return ids + [0] * (self.max_tokens - len(ids))

    def unknown_words(self, texts: list[str]) -> list[str]:
        return []  # bytes cover every text

    def to_dict(self) -> dict:
        return {"kind": self.kind, "max_tokens": self.max_tokens, "tokenizer": json.loads(self._json)}


def tokenizer_from_dict(fields: dict, source: str) -> WordTokenizer | ByteBPETokenizer:
    """The tokenizer a checkpoint stored with ``to_dict()`` (ValueError naming ``source``)."""
    kind = fields.get("kind") if isinstance(fields, dict) else None
    if kind == "word":
        return WordTokenizer(fields["vocabulary"], fields["max_tokens"])
    if kind == "byte_bpe":
        return ByteBPETokenizer(json.dumps(fields["tokenizer"]), fields["max_tokens"])
    raise ValueError(f"{source}: tokenizer kind {kind!r}: expected one of {TOKENIZER_KINDS}")
