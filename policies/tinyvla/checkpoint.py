"""Save and load TinyVLA checkpoints: ``NAME.safetensors`` (tensors) + ``NAME.json`` (everything else).

The JSON holds the model config, the tokenizer's vocabulary, the action normaliser and the
training record (dataset size, wall time, losses), so a checkpoint is self-describing and loads
with no network and no pickle.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from policies.normalization import ActionNormalizer
from policies.tinyvla.model import TinyVLA, TinyVLAConfig
from policies.tinyvla.tokenizer import WordTokenizer
from vla_envs.files import atomic_path

REFERENCE_DIR = Path(__file__).parent / "weights"
REFERENCE_NAME = "tinyvla"


def save(directory: Path, name: str, model: TinyVLA, tokenizer: WordTokenizer, normalizer: ActionNormalizer,
         training: dict) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {
        "model": model.config.to_dict(),
        "vocabulary": tokenizer.vocabulary,
        "action_normalizer": normalizer.to_dict(),
        "training": training,
    }
    tensors = {key: value.detach().contiguous() for key, value in model.state_dict().items()}
    # both written before either is renamed: a crash never leaves weights without their config
    with atomic_path(directory / f"{name}.safetensors") as weights, atomic_path(directory / f"{name}.json") as config:
        save_file(tensors, str(weights))
        config.write_text(json.dumps(meta, indent=1) + "\n")
    return directory / f"{name}.safetensors"


def load(directory: Path = REFERENCE_DIR, name: str = REFERENCE_NAME) -> tuple[TinyVLA, WordTokenizer, ActionNormalizer, dict]:
    directory = Path(directory)
    weights, meta_path = directory / f"{name}.safetensors", directory / f"{name}.json"
    for path in (weights, meta_path):
        if not path.exists():
            raise FileNotFoundError(f"TinyVLA checkpoint file {path} does not exist "
                                    f"(train one with `python -m policies.tinyvla.train`)")
    meta = json.loads(meta_path.read_text())
    config = TinyVLAConfig(**meta["model"])
    model = TinyVLA(config)
    state = load_file(str(weights))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights}: tensors do not match the config in {meta_path}: "
                         f"missing {missing}, unexpected {unexpected}")
    tokenizer = WordTokenizer(meta["vocabulary"], config.max_instruction_tokens)
    return model.eval(), tokenizer, ActionNormalizer.from_dict(meta["action_normalizer"]), meta
