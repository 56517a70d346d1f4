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


def _saved_by_one_reuse(variant, obs: dict, changed: dict) -> int:
    variant.reset(INSTRUCTION)
    variant.act(obs)
    variant.act(changed)
    return variant.episode_counters()["flops_saved"]


def test_flops_saved_count_each_cameras_reuse_whatever_ran_before():
    """The cameras' patches differ in size (8 and 16 px), so a query reusing a wrist token saves
    other FLOPs than one reusing an agent-view token: the FLOPs of one count of reused tokens are
    not those of another split, and an episode's count must not depend on what the policy met in
    earlier episodes (a served session and a worker's policy have different pasts)."""
    policy = load_reference()
    obs = observation(policy)
    agent_changed = {key: value.copy() for key, value in obs.items()}
    agent_changed["image"] = 255 - agent_changed["image"]  # every agent-view patch recomputed
    # as many tokens reused, from the other camera: the wrist's 16 patches and all but 16 of the
    # agent view's 8 px patches (its top two rows) recomputed
    wrist_changed = {key: value.copy() for key, value in obs.items()}
    wrist_changed["wrist_image"] = 255 - wrist_changed["wrist_image"]
    wrist_changed["image"][16:] = 255 - wrist_changed["image"][16:]
    counts = []
    for changed in (agent_changed, wrist_changed):
        variant = compress(policy, {"token_cache": {"similarity": 0.999}})
        variant.reset(INSTRUCTION)
        variant.act(obs)
        variant.act(changed)
        counts.append(variant.episode_counters()["reused_image_tokens"])
    assert counts == [16, 16]
    fresh = [_saved_by_one_reuse(compress(policy, {"token_cache": {"similarity": 0.999}}), obs, changed)
             for changed in (agent_changed, wrist_changed)]
    assert fresh[0] != fresh[1]
    seasoned = compress(policy, {"token_cache": {"similarity": 0.999}})
    assert [_saved_by_one_reuse(seasoned, obs, changed) for changed in (wrist_changed, agent_changed)] == fresh[::-1]


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


def test_a_slow_drift_is_measured_against_the_pixels_the_token_was_computed_from():
    """Each frame differs from the last by less than the threshold allows, but the patch keeps
    moving: once it has drifted far enough from the frame its keys and values came from, it is
    recomputed (compared frame to frame, it never would be)."""
    from policies.tinyvla.token_cache import TokenCache, changed_patches, cached_forward, reused_tokens

    policy = load_reference()
    model = policy.model
    base = observation(policy)
    policy.reset(INSTRUCTION)
    cache = TokenCache(0.99)
    recomputed = []
    for step in range(12):
        obs = {k: v.copy() for k, v in base.items()}
        obs["image"][:8, :8] = np.clip(obs["image"][:8, :8].astype(int) + 6 * step, 0, 255).astype(np.uint8)
        images = {c: torch.from_numpy(obs[c])[None] for c in model.config.patch_sizes}
        proprio = torch.from_numpy(obs["proprio"])[None]
        with torch.no_grad():
            patches = changed_patches(model, cache, images)
            reused = reused_tokens(patches)
            cached_forward(model, cache, images, policy._instruction_ids, proprio)
        recomputed.append(model.config.n_image_tokens - reused)
    first_step = static_patches(patchify(torch.from_numpy(base["image"])[None], 8)[0][:1],
                                patchify(torch.from_numpy(np.clip(base["image"].astype(int) + 6, 0, 255).astype(np.uint8))[None], 8)[0][:1], 0.99)
    assert bool(first_step[0])  # one step of drift alone stays under the threshold
    assert recomputed[0] == model.config.n_image_tokens and 1 in recomputed[1:]


def test_token_cache_with_skipped_blocks_and_batches():
    from policies.tinyvla.token_cache import TokenCache, cached_forward

    policy = load_reference()
    obs = observation(policy)
    skipping = compress(policy, {"layer_skip": {"blocks": [2]}})
    both = compress(policy, {"layer_skip": {"blocks": [2]}, "token_cache": {"similarity": 1.01}})
    skipping.reset(INSTRUCTION)
    both.reset(INSTRUCTION)
    np.testing.assert_allclose(both.act(obs), skipping.act(obs), atol=1e-6)
    images = {c: torch.zeros(2, 64, 64, 3, dtype=torch.uint8) for c in policy.model.config.patch_sizes}
    with pytest.raises(ValueError, match="one observation at a time: got a batch of 2"):
        cached_forward(policy.model, TokenCache(0.99), images, torch.zeros(2, 12, dtype=torch.long),
                       torch.zeros(2, policy.model.config.proprio_dim))
