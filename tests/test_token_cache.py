"""VLA-Cache-style visual token reuse (policies.tinyvla.token_cache) on TinyVLA."""

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch.utils.flop_counter import FlopCounterMode

from policies.compression import compress
from policies.tinyvla import load_reference
from policies.tinyvla.model import patchify
from policies.tinyvla.token_cache import static_patches

INSTRUCTION = "lift the red cube"


def observation(policy, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    config = policy.model.config
    return {"image": rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
            "wrist_image": rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
            "proprio": rng.normal(size=config.proprio_dim).astype(np.float32)}


def test_static_patches_thresholds_the_cosine_similarity():
    previous = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    # cosines: 1, cos(60 deg) = 0.5, -1, both zero (equal), zero vs non-zero
    current = torch.tensor([[2.0, 0.0], [0.5, np.sqrt(3) / 2], [-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    assert static_patches(previous, current, 0.99).tolist() == [True, False, False, True, False]
    assert static_patches(previous, current, 0.49).tolist() == [True, True, False, True, False]


def test_a_threshold_above_one_is_the_full_forward_pass():
    policy = load_reference()
    variant = compress(policy, {"token_cache": {"similarity": 1.01}})
    policy.reset(INSTRUCTION)
    variant.reset(INSTRUCTION)
    for seed in range(3):
        obs = observation(policy, seed)
        np.testing.assert_allclose(variant.act(obs), policy.act(obs), atol=1e-6)
    assert variant.episode_counters()["reused_image_tokens"] == 0
    assert variant.episode_counters()["flops_saved"] == 0


def test_an_unchanged_observation_reuses_every_image_token_and_acts_the_same():
    policy = load_reference()
    variant = compress(policy, {"token_cache": {"similarity": 0.99}})
    obs = observation(policy)
    variant.reset(INSTRUCTION)
    first = variant.act(obs)
    second = variant.act(obs)
    n_images = policy.model.config.n_image_tokens
    counters = variant.episode_counters()
    assert counters["reused_image_tokens"] == n_images
    # the reused keys and values were computed in the same context: the same chunk
    np.testing.assert_allclose(second, first, atol=1e-6)
    policy.reset(INSTRUCTION)
    np.testing.assert_allclose(first, policy.act(obs), atol=1e-6)
    # FLOPs saved = a full call's minus an all-reused call's, each counted by torch's counter
    with FlopCounterMode(display=False) as full:
        policy.act(obs)
    fresh = compress(policy, {"token_cache": {"similarity": 0.99}})
    fresh.reset(INSTRUCTION)
    fresh.act(obs)
    with FlopCounterMode(display=False) as cached:
        fresh.act(obs)
    assert counters["flops_saved"] == full.get_total_flops() - cached.get_total_flops() > 0
    # the prefix's 14 tokens still run through every block: most, not all, FLOPs are saved
    assert 0.5 < counters["flops_saved"] / full.get_total_flops() < 1.0


def test_changed_patches_are_recomputed_and_counted():
    policy = load_reference()
    variant = compress(policy, {"token_cache": {"similarity": 0.999}})
    obs = observation(policy)
    moved = {key: value.copy() for key, value in obs.items()}
    moved["image"][:8, :16] = 255 - moved["image"][:8, :16]  # two 8 px agent-view patches inverted
    moved["wrist_image"][16:32, 16:32] //= 2  # one 16 px wrist patch darkened
    config = policy.model.config
    expected_static = sum(
        int(static_patches(patchify(torch.from_numpy(obs[c])[None], p)[0],
                           patchify(torch.from_numpy(moved[c])[None], p)[0], 0.999).sum())
        for c, p in config.patch_sizes.items())
    assert expected_static <= config.n_image_tokens - 2  # the inverted patches are not similar
    variant.reset(INSTRUCTION)
    variant.act(obs)
    chunk = variant.act(moved)
    assert variant.episode_counters()["reused_image_tokens"] == expected_static
    policy.reset(INSTRUCTION)
    assert not np.allclose(chunk, policy.act(obs), atol=1e-6)  # the changed patches were seen


def test_reset_starts_each_episode_with_a_full_call():
    policy = load_reference()
    variant = compress(policy, {"token_cache": {"similarity": 0.99}})
    obs = observation(policy)
    for _ in range(2):
        variant.reset(INSTRUCTION)
        variant.act(obs)
        assert variant.episode_counters() == {"decode_failures": 0, "reused_image_tokens": 0, "flops_saved": 0}
    assert policy.episode_counters()["reused_image_tokens"] == 0  # the base is untouched
    assert getattr(policy, "token_cache") is None


def test_token_cache_refuses_what_it_cannot_do():
    policy = load_reference()
    with pytest.raises(ValidationError, match="similarity"):
        compress(policy, {"token_cache": {"similarity": 0}})
    with pytest.raises(ValueError, match="token caching and token sparsification do not combine"):
        compress(policy, {"token_sparsification": {"keep": 0.5}, "token_cache": {"similarity": 0.99}})
    from policies.base import Policy

    class Still(Policy):
        action_dim = 7

        def act(self, obs):
            return np.zeros((1, 7), np.float32)

    with pytest.raises(ValueError, match="does not support token caching"):
        compress(Still(), {"token_cache": {"similarity": 0.99}})
