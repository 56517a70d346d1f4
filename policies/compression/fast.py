"""FAST action tokenization (Pertsch et al. 2025), as pi0-FAST ships it, and its decode failures.

An (H, D) action chunk becomes tokens the way ``physical-intelligence/fast``'s
``UniversalActionProcessor`` makes them:

1. DCT-II (orthonormal) along time, per action dimension;
2. scale by ``scale`` and round to integers;
3. flatten time-major (all dimensions' first coefficient, then the second...), shift by
   ``min_token`` so that the smallest integer seen in fitting is 0, and write each as one
   character (``chr``);
4. byte-level byte-pair encoding of that string (Hugging Face ``tokenizers``'
   ``ByteLevelBPETokenizer``, trained by ``FastTokenizer.fit`` on demonstrations' chunks with the
   whole integer range as its initial alphabet, as ``UniversalActionProcessor.fit`` trains it).

Decoding reverses it. A token sequence that does not decode to exactly H x D coefficients (an
autoregressive decoder stopped early by its token budget, or one that emitted a malformed
sequence) is a **decode failure**. ``relaxed=False`` is pi0-FAST's (openpi's) behaviour: the
chunk is all zeros, which for delta actions means "stop", a jerk. ``relaxed=True`` is
LeRobot's pi0-FAST ``relaxed_decoding``: the coefficients are truncated or zero-padded to H x D
(dropped high frequencies) and the chunk decoded from them. ``decode`` says whether it failed,
so that the evaluation counts failures per episode.

The rounding error is bounded in closed form: the DCT is orthonormal, so each action
dimension's decoded sequence is off by at most ``0.5 / scale * sqrt(H)`` (Euclidean, per
dimension), and each action by at most that too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.fft import dct, idct


@dataclass
class FastDecode:
    chunk: np.ndarray  # (H, D) float32
    failed: bool  # the tokens did not hold exactly H x D coefficients
    coefficients: int  # how many they held


class FastTokenizer:
    """FAST for chunks of ``horizon`` x ``action_dim`` actions; ``fit`` trains one."""

    def __init__(self, tokenizer_json: str, scale: float, min_token: int, horizon: int, action_dim: int):
        from tokenizers import Tokenizer

        if scale <= 0:
            raise ValueError(f"scale={scale}: expected > 0")
        if horizon < 1 or action_dim < 1:
            raise ValueError(f"horizon={horizon}, action_dim={action_dim}: expected >= 1")
        self._json = tokenizer_json
        self.bpe = Tokenizer.from_str(tokenizer_json)
        self.scale = float(scale)
        self.min_token = int(min_token)
        self.horizon = int(horizon)
        self.action_dim = int(action_dim)

    # -- fitting ---------------------------------------------------------------------------
    @classmethod
    def fit(cls, chunks: np.ndarray, scale: float = 10.0, vocab_size: int = 1024) -> FastTokenizer:
        """Train the byte-pair encoding on ``chunks`` (N, H, D), as ``UniversalActionProcessor.fit``."""
        from tokenizers import ByteLevelBPETokenizer
        from tokenizers.trainers import BpeTrainer

        chunks = np.asarray(chunks, dtype=np.float64)
        if chunks.ndim != 3 or len(chunks) == 0:
            raise ValueError(f"chunks of shape {chunks.shape}: expected (N, H, D) with N >= 1")
        integers = np.around(dct(chunks, axis=1, norm="ortho") * scale).astype(np.int64)
        min_token, max_token = int(integers.min()), int(integers.max())
        if max_token - min_token > vocab_size:
            raise ValueError(f"vocab_size={vocab_size}: smaller than the range of coefficients "
                             f"({max_token - min_token}) at scale={scale}")
        strings = ["".join(map(chr, (row.reshape(-1) - min_token))) for row in integers]
        bpe = ByteLevelBPETokenizer()
        trainer = BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False, special_tokens=[],
                             initial_alphabet=[chr(i) for i in range(max_token - min_token + 1)],
                             max_token_length=10000)
        # the inner tokenizer, as FAST does: the wrapper's own training takes no custom alphabet
        bpe._tokenizer.train_from_iterator(strings, trainer=trainer)
        return cls(bpe._tokenizer.to_str(), scale, min_token, chunks.shape[1], chunks.shape[2])

    # -- coding ----------------------------------------------------------------------------
    def coefficients(self, chunk: np.ndarray) -> np.ndarray:
        """The chunk's rounded, scaled DCT coefficients (H, D), integers."""
        chunk = np.asarray(chunk, dtype=np.float64)
        if chunk.shape != (self.horizon, self.action_dim):
            raise ValueError(f"action chunk of shape {chunk.shape}: expected ({self.horizon}, {self.action_dim})")
        return np.around(dct(chunk, axis=0, norm="ortho") * self.scale).astype(np.int64)

    def encode(self, chunk: np.ndarray) -> list[int]:
        """The chunk's FAST token ids. Coefficients below ``min_token`` are clipped to it, as
        FAST clips them (``np.maximum(... - min_token, 0)``)."""
        shifted = np.maximum(self.coefficients(chunk).reshape(-1) - self.min_token, 0)
        return self.bpe.encode("".join(map(chr, shifted))).ids

    def decode(self, ids: list[int], relaxed: bool = False) -> FastDecode:
        """The chunk the tokens decode to, and whether decoding failed (module docstring)."""
        expected = self.horizon * self.action_dim
        try:
            text = self.bpe.decode(list(ids))
            values = np.array([ord(c) for c in text], dtype=np.int64) + self.min_token
        except Exception:  # ids outside the vocabulary: tokenizers raises a bare Exception
            return FastDecode(np.zeros((self.horizon, self.action_dim), np.float32), True, 0)
        count = len(values)
        failed = count != expected
        if failed and not relaxed:
            return FastDecode(np.zeros((self.horizon, self.action_dim), np.float32), True, count)
        if failed:
            values = np.pad(values[:expected], (0, max(0, expected - count)))
        coefficients = values.reshape(self.horizon, self.action_dim) / self.scale
        return FastDecode(idct(coefficients, axis=0, norm="ortho").astype(np.float32), failed, count)

    def roundtrip(self, chunk: np.ndarray, max_tokens: int | None = None, relaxed: bool = False) -> FastDecode:
        """Encode, keep at most ``max_tokens`` tokens (a decoder's token budget), decode."""
        ids = self.encode(chunk)
        return self.decode(ids if max_tokens is None else ids[:max_tokens], relaxed)

    # -- files -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"scale": self.scale, "min_token": self.min_token, "horizon": self.horizon,
                "action_dim": self.action_dim, "bpe": json.loads(self._json)}

    @classmethod
    def from_dict(cls, fields: dict, source: str = "FAST tokenizer") -> FastTokenizer:
        try:
            return cls(json.dumps(fields["bpe"]), fields["scale"], fields["min_token"], fields["horizon"],
                       fields["action_dim"])
        except KeyError as missing:
            raise ValueError(f"{source}: field {missing} is missing (expected scale, min_token, horizon, "
                             f"action_dim, bpe)") from None

    def save(self, path: Path) -> Path:
        from vla_envs.files import atomic_path

        with atomic_path(Path(path)) as tmp:
            tmp.write_text(json.dumps(self.to_dict()) + "\n")
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> FastTokenizer:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"FAST tokenizer {path} does not exist (fit one with "
                                    f"`python -m policies.compression.fast_vocabulary`)")
        return cls.from_dict(json.loads(path.read_text()), str(path))


def rounding_bound(scale: float, horizon: int) -> float:
    """The largest error rounding can put on any decoded action value (module docstring)."""
    return 0.5 / scale * np.sqrt(horizon)


SHIPPED_DIR = Path(__file__).parent


def shipped_path(tokenizer: str) -> Path:
    """A shipped vocabulary's file (``tinyvla`` -> ``fast_tinyvla.json`` beside this module), or
    ``tokenizer`` itself when it is a path to a JSON file."""
    if tokenizer.endswith(".json"):
        return Path(tokenizer)
    return SHIPPED_DIR / f"fast_{tokenizer}.json"
