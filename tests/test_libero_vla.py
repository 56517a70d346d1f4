"""The LIBERO reference VLA's recipe (``configs/policies/libero_vla.yaml``): a byte-level BPE
tokenizer that encodes any instruction, an architecture in the size the issue asks for (10-30M
parameters, >= 256 image tokens at >= 128 px, chunks of 8-16), checkpoints that carry their
tokenizer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from policies.checkpoint_checks import CheckpointError
from policies.normalization import ActionNormalizer
from policies.tinyvla import checkpoint
from policies.tinyvla.model import TinyVLA, TinyVLAConfig
from policies.tinyvla.tokenizer import ByteBPETokenizer, tokenizer_from_dict
from policies.tinyvla.train import TrainConfig, build_tokenizer, tokenizer_texts
from vla_envs.config import load_config

TEXTS = ["pick up the black bowl next to the ramekin and place it on the plate",
         "pick up the ketchup and place it in the basket", "open the top drawer and put the bowl inside"]


@pytest.fixture(scope="module")
def bpe():
    return ByteBPETokenizer.from_texts(TEXTS, max_tokens=24, vocab_size=300)


def test_byte_level_bpe_encodes_unseen_words_as_byte_pieces_and_pads_with_zero(bpe):
    ids = bpe.encode("pick up the zebra")
    assert len(ids) == 24 and ids[-1] == 0 and 0 not in ids[:5]
    assert bpe.encode("pick up the zebra") != bpe.encode("pick up the basket")
    assert bpe.unknown_words(["pick up the zebra"]) == []
    assert bpe.pieces("the bowl") == ["Ġthe", "Ġbowl"]  # frequent training words are whole tokens


def test_a_tokenizer_survives_its_checkpoint_form(bpe):
    again = tokenizer_from_dict(json.loads(json.dumps(bpe.to_dict())), "test")
    assert all(again.encode(text) == bpe.encode(text) for text in TEXTS + ["grab the zebra"])
    with pytest.raises(ValueError, match=r"test: tokenizer kind 'sentencepiece': expected one of \('word', 'byte_bpe'\)"):
        tokenizer_from_dict({"kind": "sentencepiece"}, "test")


def test_the_reference_recipe_is_the_size_the_issue_asks_for():
    pytest.importorskip("libero", reason='LIBERO is not installed: pip install -e ".[libero]"')
    config = load_config("configs/policies/libero_vla.yaml", TrainConfig)
    tokenizer = build_tokenizer(config.model, [])
    texts = tokenizer_texts([])
    assert len(texts) == 112 and "pick up the ketchup and place it in the basket" in texts  # LIBERO's distinct instructions
    assert max(len([i for i in tokenizer.encode(text) if i]) for text in texts) <= config.model.max_instruction_tokens
    model_config = TinyVLAConfig(vocab_size=tokenizer.vocab_size, proprio_dim=8, image_size=config.demos.image_size,
                                 **config.model.model_dump(exclude={"tokenizer", "tokenizer_vocab_size"}))
    model = TinyVLA(model_config)
    parameters = sum(p.numel() for p in model.parameters())
    assert 10e6 <= parameters <= 30e6
    assert model_config.image_size >= 128 and model_config.n_image_tokens >= 256
    assert 8 <= model_config.chunk_size <= 16 and model_config.proprio_key == "libero_state"


def test_a_checkpoint_with_a_bpe_tokenizer_loads_and_refuses_a_mismatched_one(bpe, tmp_path):
    config = TinyVLAConfig(vocab_size=bpe.vocab_size, proprio_dim=8, width=16, depth=1, heads=2, chunk_size=2,
                           image_size=32, patch_sizes={"image": 16, "wrist_image": 16}, max_instruction_tokens=24,
                           sparsify_after_block=0, proprio_key="libero_state")
    model = TinyVLA(config)
    normalizer = ActionNormalizer.from_data(np.random.default_rng(0).normal(size=(10, 7)))
    checkpoint.save(tmp_path, "toy", model, bpe, normalizer, {"steps": 0})
    loaded, tokenizer, _, _ = checkpoint.load(tmp_path, "toy")
    assert tokenizer.encode(TEXTS[0]) == bpe.encode(TEXTS[0])
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    meta = json.loads((tmp_path / "toy.json").read_text())
    meta["tokenizer"]["max_tokens"] = 12
    (tmp_path / "toy.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"tokenizer\.max_tokens = 12: expected model\.max_instruction_tokens = 24"):
        checkpoint.load(tmp_path, "toy")
