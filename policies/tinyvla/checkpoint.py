"""Save and load TinyVLA checkpoints: ``NAME.safetensors`` (tensors) + ``NAME.json`` (everything else).

The JSON holds the model config, the tokenizer (``"tokenizer"``: its kind and vocabulary or
merges; checkpoints of word tokenizers before it was there hold ``"vocabulary"``), the action normaliser and the
training record (dataset size, wall time, losses), so a checkpoint is self-describing and loads
with no network and no pickle.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from policies.checkpoint_checks import CheckpointError, check_finite, check_vector
from policies.normalization import ActionNormalizer
from policies.tinyvla.model import TinyVLA, TinyVLAConfig
from policies.tinyvla.tokenizer import ByteBPETokenizer, WordTokenizer, tokenizer_from_dict
from vla_envs.files import atomic_path

REFERENCE_DIR = Path(__file__).parent / "weights"
REFERENCE_NAME = "tinyvla"


def save(directory: Path, name: str, model: TinyVLA, tokenizer: WordTokenizer | ByteBPETokenizer, normalizer: ActionNormalizer,
         training: dict) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {
        "model": model.config.to_dict(),
        "tokenizer": tokenizer.to_dict(),
        "action_normalizer": normalizer.to_dict(),
        "training": training,
    }
    tensors = {key: value.detach().contiguous() for key, value in model.state_dict().items()}
    # both written before either is renamed: a crash never leaves weights without their config
    with atomic_path(directory / f"{name}.safetensors") as weights, atomic_path(directory / f"{name}.json") as config:
        save_file(tensors, str(weights))
        config.write_text(json.dumps(meta, indent=1) + "\n")
    return directory / f"{name}.safetensors"


def load(directory: Path = REFERENCE_DIR, name: str = REFERENCE_NAME) -> tuple[TinyVLA, WordTokenizer | ByteBPETokenizer, ActionNormalizer, dict]:
    """The checkpoint ``directory/name``, checked against its own config before any number is used
    (``CheckpointError`` naming the file, the field or tensor and what was expected)."""
    directory = Path(directory)
    weights, meta_path = directory / f"{name}.safetensors", directory / f"{name}.json"
    for path in (weights, meta_path):
        if not path.exists():
            raise FileNotFoundError(f"TinyVLA checkpoint file {path} does not exist "
                                    f"(train one with `python -m policies.tinyvla.train`)")
    meta = json.loads(meta_path.read_text())
    config = _config(meta, meta_path)
    tokenizer = _tokenizer(meta, meta_path, config)
    normalizer = ActionNormalizer.from_dict(meta.get("action_normalizer"), config.action_dim,
                                            f"{meta_path}: action_normalizer")
    model = TinyVLA(config)
    state = load_file(str(weights))
    check_state(state, model, str(weights), f"the config in {meta_path}")
    model.load_state_dict(state, strict=True)
    return model.eval(), tokenizer, normalizer, meta


def _tokenizer(meta: dict, meta_path: Path, config: TinyVLAConfig) -> WordTokenizer | ByteBPETokenizer:
    legacy = "tokenizer" not in meta  # a word tokenizer's checkpoint from before "tokenizer"
    try:
        if legacy:
            vocabulary = meta.get("vocabulary")
            if not isinstance(vocabulary, list):
                raise CheckpointError(f"{meta_path}: vocabulary is {type(vocabulary).__name__}: expected a list of "
                                      f"model.vocab_size = {config.vocab_size} words (or a 'tokenizer' object)")
            tokenizer = WordTokenizer(vocabulary, config.max_instruction_tokens)
        else:
            tokenizer = tokenizer_from_dict(meta["tokenizer"], f"{meta_path}: tokenizer")
    except CheckpointError:
        raise
    except Exception as exc:  # a missing field, a bad vocabulary, or tokenizers' own bare Exception
        raise CheckpointError(f"{meta_path}: {'vocabulary' if legacy else 'tokenizer does not load'}: {exc}") from None
    if tokenizer.vocab_size != config.vocab_size:
        what = f"vocabulary has {tokenizer.vocab_size} words" if legacy else f"tokenizer has {tokenizer.vocab_size} tokens"
        raise CheckpointError(f"{meta_path}: {what}: expected model.vocab_size = {config.vocab_size}")
    if tokenizer.max_tokens != config.max_instruction_tokens:
        raise CheckpointError(f"{meta_path}: tokenizer.max_tokens = {tokenizer.max_tokens}: expected "
                              f"model.max_instruction_tokens = {config.max_instruction_tokens}")
    return tokenizer


def _config(meta: dict, meta_path: Path) -> TinyVLAConfig:
    fields = meta.get("model") if isinstance(meta, dict) else None
    if not isinstance(fields, dict):
        raise CheckpointError(f"{meta_path}: 'model' is {type(fields).__name__}: expected an object of TinyVLAConfig fields")
    try:
        return TinyVLAConfig(**fields)
    except TypeError as exc:  # a missing or unknown field
        raise CheckpointError(f"{meta_path}: 'model' does not fit TinyVLAConfig ({exc})") from None


def check_state(state: dict, model: TinyVLA, source: str, expected_from: str) -> None:
    """Every tensor ``model`` needs is in ``state`` with the parameter's shape and only finite
    values, and ``proprio_std`` (a divisor) is positive. ``load_state_dict`` would also catch a
    shape mismatch, but in a page of text; and it takes NaN and infinities as they come."""
    expected = model.state_dict()
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    if missing or unexpected:
        raise CheckpointError(f"{source}: tensors do not match {expected_from}: "
                              f"missing {_first(missing)}, unexpected {_first(unexpected)}")
    for key, parameter in expected.items():
        if tuple(state[key].shape) != tuple(parameter.shape):
            raise CheckpointError(f"{source}: tensor {key!r} has shape {tuple(state[key].shape)}: "
                                  f"expected {tuple(parameter.shape)} (from {expected_from})")
        check_finite(f"{source}: tensor {key!r}", state[key])
    check_vector(f"{source}: tensor 'proprio_std'", state["proprio_std"].double().numpy(), model.config.proprio_dim,
                 "proprio_dim", minimum="> 0")


def _first(names: list[str], count: int = 5) -> str:
    return str(names) if len(names) <= count else f"{names[:count]} and {len(names) - count} more"
