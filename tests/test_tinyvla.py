"""TinyVLA: token sparsification, checkpoints, the instruction path, training end to end, shipped weights."""


import gymnasium as gym
import numpy as np
import pytest
import torch

import vla_envs  # noqa: F401
from policies.compression import compress
from policies.normalization import ActionNormalizer
from policies.profiling import profile
from policies.tinyvla import TinyVLA, TinyVLAConfig, TinyVLAPolicy, load_reference
from policies.tinyvla import checkpoint
from policies.tinyvla.tokenizer import WordTokenizer
from policies.tinyvla.train import chunk_indices
from vla_envs.config import load_task_configs

INSTRUCTIONS = ["pick up the red cube and lift it off the table", "stack the red cube on the green cube"]


def small_policy(seed: int = 0) -> TinyVLAPolicy:
    torch.manual_seed(seed)
    tokenizer = WordTokenizer.from_texts(INSTRUCTIONS, max_tokens=12)
    config = TinyVLAConfig(vocab_size=len(tokenizer.vocabulary), proprio_dim=5, width=32, depth=3, heads=2)
    normalizer = ActionNormalizer(np.zeros(7), np.full(7, 0.5))
    return TinyVLAPolicy(TinyVLA(config), tokenizer, normalizer)


def random_obs(seed: int = 0, size: int = 64) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "wrist_image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "proprio": rng.normal(size=5).astype(np.float32),
    }


def test_tokenizer_pads_and_maps_unknown_words():
    tokenizer = WordTokenizer.from_texts(INSTRUCTIONS, max_tokens=6)
    ids = tokenizer.encode("Stack the BLUE cube")
    assert len(ids) == 6 and ids[2] == 1 and ids[4:] == [0, 0]  # 'blue' unknown, padded
    assert tokenizer.encode("pick up the red cube and lift it off") == tokenizer.encode("pick up the red cube and")


@pytest.mark.parametrize("method", ["attention", "norm", "random"])
@pytest.mark.parametrize("keep", [0.1, 0.25, 0.5, 0.9])
def test_token_keep_ratio_is_exact(method, keep):
    policy = small_policy()
    policy.set_token_sparsification(keep, method)
    policy.reset(INSTRUCTIONS[0])
    chunk = policy.act(random_obs())
    kept = policy.model.last_kept_indices
    n_image = policy.model.config.n_image_tokens  # 64 agent-view + 16 wrist patches
    assert n_image == 80
    assert kept.shape == (1, max(1, round(keep * n_image)))
    assert len(set(kept[0].tolist())) == kept.shape[1]  # distinct tokens
    assert 0 <= int(kept.min()) and int(kept.max()) < n_image
    assert chunk.shape == (8, 7) and np.isfinite(chunk).all()


def test_token_sparsification_changes_only_the_tokens():
    policy = small_policy()
    obs = random_obs()
    policy.reset(INSTRUCTIONS[0])
    full = policy.act(obs)
    policy.set_token_sparsification(1.0, "attention")
    assert np.array_equal(policy.act(obs), full)  # keep = 1 is exactly the dense model
    policy.set_token_sparsification(0.5, "attention")
    assert not np.array_equal(policy.act(obs), full)


def test_attention_selection_keeps_the_most_attended_tokens():
    policy = small_policy()
    model = policy.model
    captured = {}
    # record what block 1 (the sparsification point) attends, to recompute the ranking by hand

    def hook(module, inputs, output):
        captured["weights"] = output[1]

    handle = model.blocks[1].attn.register_forward_hook(hook)
    policy.set_token_sparsification(0.25, "attention")
    policy.reset(INSTRUCTIONS[0])
    policy.act(random_obs())
    handle.remove()
    prefix = model.config.n_prefix_tokens
    scores = captured["weights"][0, :, :prefix, prefix:].mean(dim=(0, 1))
    expected = set(torch.topk(scores, 20).indices.tolist())
    assert set(model.last_kept_indices[0].tolist()) == expected


def test_random_sparsification_restarts_each_episode():
    policy = small_policy()
    policy.set_token_sparsification(0.5, "random")
    obs = random_obs()
    policy.reset(INSTRUCTIONS[0])
    first = [policy.act(obs), policy.model.last_kept_indices.clone()]
    second_call = policy.model.last_kept_indices.clone()
    policy.act(obs)
    assert not torch.equal(policy.model.last_kept_indices, second_call)  # fresh draw per call
    policy.reset(INSTRUCTIONS[0])
    again = policy.act(obs)
    assert np.array_equal(again, first[0]) and torch.equal(policy.model.last_kept_indices, first[1])


def test_sparsification_reduces_flops():
    policy = small_policy()
    obs = random_obs()
    dense = profile(policy, obs, repeats=3)
    half, quarter = (
        profile(compress(policy, {"token_sparsification": {"keep": keep, "method": "norm"}}), obs, repeats=3)
        for keep in (0.5, 0.25)
    )
    # blocks after the first see 14 + 20 tokens instead of 14 + 80
    assert quarter.flops_per_call < half.flops_per_call < 0.9 * dense.flops_per_call
    assert quarter.flops_per_call < 0.8 * dense.flops_per_call
    assert quarter.params == dense.params


@pytest.mark.parametrize("structured", [False, True])
def test_pruning_leaves_the_action_head_whole(structured):
    policy = small_policy()
    pruned = compress(policy, {"pruning": {"fraction": 0.5, "structured": structured}})
    assert torch.equal(pruned.model.action_head.weight, policy.model.action_head.weight)
    qkv = pruned.torch_module().blocks[0].attn.qkv.weight
    zeros = int((qkv == 0).sum()) if not structured else int((qkv.abs().sum(dim=1) == 0).sum())
    assert zeros == (qkv.numel() // 2 if not structured else qkv.shape[0] // 2)


def test_bad_sparsification_and_observations_are_rejected():
    policy = small_policy()
    with pytest.raises(ValueError, match="keep=0"):
        policy.set_token_sparsification(0.0)
    with pytest.raises(ValueError, match="method='top'"):
        policy.set_token_sparsification(0.5, "top")
    obs = random_obs()
    with pytest.raises(KeyError, match="wrist_image"):
        policy.act({k: v for k, v in obs.items() if k != "wrist_image"})
    with pytest.raises(ValueError, match=r"obs\['image'\] has shape \(32, 32, 3\), expected \(64, 64, 3\)"):
        policy.act({**obs, "image": obs["image"][:32, :32]})


def test_instruction_changes_the_action():
    policy = small_policy()
    obs = random_obs()
    policy.reset(INSTRUCTIONS[0])
    lift = policy.act(obs)
    policy.reset(INSTRUCTIONS[1])
    assert not np.allclose(policy.act(obs), lift)


def test_checkpoint_round_trip_is_exact(tmp_path):
    policy = small_policy(seed=3)
    checkpoint.save(tmp_path, "m", policy.model, policy.tokenizer, policy.normalizer, {"note": "test"})
    loaded = load_reference(tmp_path, "m")
    obs = random_obs(1)
    policy.reset(INSTRUCTIONS[1])
    loaded.reset(INSTRUCTIONS[1])
    assert np.array_equal(policy.act(obs), loaded.act(obs))
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_reference(tmp_path, "missing")


def test_chunk_indices_repeat_the_last_action_of_each_episode():
    episode = np.array([0, 0, 0, 1, 1])
    np.testing.assert_array_equal(
        chunk_indices(episode, 3), [[0, 1, 2], [1, 2, 2], [2, 2, 2], [3, 4, 4], [4, 4, 4]]
    )


def test_training_entry_point_collects_trains_saves_and_loads(tmp_path):
    from policies.tinyvla.train import main

    config = tmp_path / "tiny.yaml"
    config.write_text(
        f"demos: {{cache_dir: {tmp_path / 'demos'}, image_size: 32, episodes: {{Lift: 2}}}}\n"
        "model: {width: 16, depth: 2, heads: 2, chunk_size: 4, patch_sizes: {image: 8, wrist_image: 16}}\n"
        "train: {steps: 3, batch_size: 8, warmup_steps: 1}\n"
        f"output: {{directory: {tmp_path / 'out'}, name: lift}}\n"
    )
    main([str(config)])
    demos = np.load(tmp_path / "demos" / "Lift.npz")
    assert len(demos["seed"]) == 2 and demos["image"].shape[1:] == (32, 32, 3)
    assert len(demos["action"]) == len(demos["image"]) == len(demos["proprio"])
    policy = load_reference(tmp_path / "out", "lift")
    assert policy.chunk_size == 4
    env = gym.make("vla_envs/Lift-v0", obs_mode="rgb", image_size=32)
    obs, info = env.reset(seed=0)
    policy.reset(info["instruction"])
    chunk = policy.act(obs)
    assert chunk.shape == (4, 7) and (np.abs(chunk) <= 1).all()
    env.close()


def test_earlier_frames_stay_inside_each_episode():
    from policies.tinyvla.train import earlier_frames

    episode = np.array([0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(earlier_frames(episode, 2), [-1, -1, 0, -1, -1, 3, 4])


def test_smoothness_fine_tune_keeps_the_checkpoints_vocabulary_and_smooths_its_chunks(tmp_path):
    """Fine-tuning from a checkpoint with a heavy jerk + action-rate weight: the vocabulary and
    action normaliser are the checkpoint's, the record says how it was made, and the predicted
    chunks of the demonstration frames get smoother than the starting model's."""

    import torch

    from policies.smoothness import action_rate_loss, jerk_loss
    from policies.tinyvla import checkpoint
    from policies.tinyvla.train import main

    demos = tmp_path / "demos"
    common = (f"demos: {{cache_dir: {demos}, image_size: 32, episodes: {{Lift: 2}}}}\n"
              "model: {width: 16, depth: 2, heads: 2, chunk_size: 4, patch_sizes: {image: 8, wrist_image: 16}}\n")
    base_config = tmp_path / "base.yaml"
    base_config.write_text(common + "train: {steps: 40, batch_size: 16, warmup_steps: 1, learning_rate: 0.003}\n"
                           f"output: {{directory: {tmp_path}, name: base}}\n")
    main([str(base_config)])
    smooth_config = tmp_path / "smooth.yaml"
    smooth_config.write_text(
        common + "train: {steps: 40, batch_size: 16, warmup_steps: 1, learning_rate: 0.003}\n"
        f"init_from: {{directory: {tmp_path}, name: base}}\n"
        "smoothness: {action_rate: 20.0, jerk: 40.0, continuity: 5.0, shift: 2, action_dims: [0, 1, 2]}\n"
        f"output: {{directory: {tmp_path}, name: smooth}}\n")
    main([str(smooth_config)])

    base, base_tokens, base_norm, _ = checkpoint.load(tmp_path, "base")
    smooth, smooth_tokens, smooth_norm, meta = checkpoint.load(tmp_path, "smooth")
    assert smooth_tokens.vocabulary == base_tokens.vocabulary
    assert smooth_norm.to_dict() == base_norm.to_dict()
    record = meta["training"]
    assert record["init_from"]["name"] == "base" and record["smoothness"]["jerk"] == 40.0
    assert set(record["final_terms"]) == {"imitation_l1", "action_rate", "jerk", "continuity"}

    data = np.load(demos / "Lift.npz")
    words = torch.tensor([base_tokens.encode(str(data["instruction"]))] * len(data["action"]))
    images = {cam: torch.from_numpy(data[cam]) for cam in ("image", "wrist_image")}
    proprio = torch.from_numpy(data["proprio"])
    with torch.no_grad():
        before = base(images, words, proprio)[..., :3]
        after = smooth(images, words, proprio)[..., :3]
    assert jerk_loss(after) < 0.5 * jerk_loss(before)
    assert action_rate_loss(after) < 0.5 * action_rate_loss(before)

    mismatch = tmp_path / "mismatch.yaml"
    mismatch.write_text(common.replace("chunk_size: 4", "chunk_size: 6") + "train: {steps: 1, batch_size: 4}\n"
                        f"init_from: {{directory: {tmp_path}, name: base}}\noutput: {{directory: {tmp_path}, name: x}}\n")
    with pytest.raises(ValueError, match="chunk_size is 4 in the checkpoint, 6 in this config"):
        main([str(mismatch)])


def test_bad_training_config_fails_at_load(tmp_path):
    from vla_envs.config import ConfigError, load_config
    from policies.tinyvla.train import TrainConfig

    path = tmp_path / "bad.yaml"
    path.write_text("demos: {episodes: {Lift: 2}}\ntrain: {steps: 0}\n")
    with pytest.raises(ConfigError, match="steps"):
        load_config(path, TrainConfig)


def test_random_shift_equals_replicate_pad_and_crop():
    from policies.tinyvla.train import random_shift

    images = torch.randint(0, 256, (5, 16, 16, 3), dtype=torch.uint8)
    offsets = torch.tensor([[0, 0], [8, 8], [4, 4], [1, 7], [6, 2]])
    shifted = random_shift(images, 4, offsets)
    padded = torch.nn.functional.pad(images.permute(0, 3, 1, 2).float(), (4,) * 4, mode="replicate")
    for i, (y, x) in enumerate(offsets.tolist()):
        expected = padded[i, :, y : y + 16, x : x + 16].permute(1, 2, 0).to(torch.uint8)
        assert torch.equal(shifted[i], expected)
    assert torch.equal(shifted[2], images[2])  # offset == pad: no shift


@pytest.fixture(scope="module")
def lift_obs():
    env = gym.make("vla_envs/Lift-v0", obs_mode="rgb", image_size=64)
    obs, info = env.reset(seed=0)
    env.close()
    return obs, info["instruction"]


def test_shipped_reference_vla_loads_offline_and_acts(lift_obs):
    obs, instruction = lift_obs
    policy = load_reference()
    meta = checkpoint.load()[3]
    assert set(meta["training"]["episodes"]) >= {"Lift", "Stack", "PickPlaceCan"}
    assert (checkpoint.REFERENCE_DIR / "tinyvla.safetensors").stat().st_size < 8 * 2**20
    policy.reset(instruction)
    chunk = policy.act(obs)
    assert chunk.shape == (8, 7) and chunk.dtype == np.float32 and (np.abs(chunk) <= 1).all()
    # from Lift's start pose the first move is towards the cube: down, gripper open
    assert chunk[0, 2] < 0 and chunk[0, 6] < 0
    policy.reset("stack the red cube on top of the green cube")
    assert not np.allclose(policy.act(obs), chunk, atol=1e-3)  # the instruction matters


@pytest.mark.parametrize("task", sorted(load_task_configs()))
def test_shipped_reference_vla_was_trained_on_and_acts_on_every_task(task):
    """Every registered task is in the shipped weights' training set, and the model's first chunk
    from that task's start, read in its own instruction, is a valid bounded chunk."""
    policy = load_reference()
    assert task in checkpoint.load()[3]["training"]["episodes"]
    env = gym.make(f"vla_envs/{task}-v0", obs_mode="rgb", image_size=64)
    obs, info = env.reset(seed=0)
    env.close()
    policy.reset(info["instruction"])
    chunk = policy.act(obs)
    assert chunk.shape == (8, 7) and np.isfinite(chunk).all() and (np.abs(chunk) <= 1).all()
    assert np.abs(chunk[:, :3]).max() > 0.01  # it moves the hand, not a zero chunk


def test_shipped_vla_compressed_variants_act(lift_obs):
    obs, instruction = lift_obs
    base = load_reference()
    base.reset(instruction)
    reference = base.act(obs)
    for spec in ({"quantization": {"method": "fake", "bits": 8}}, {"quantization": {"method": "dynamic_int8"}},
                 {"pruning": {"fraction": 0.3}}, {"token_sparsification": {"keep": 0.5, "method": "attention"}}):
        variant = compress(base, spec, base_name="tinyvla")
        variant.reset(instruction)
        chunk = variant.act(obs)
        assert chunk.shape == reference.shape and not np.array_equal(chunk, reference)
        assert np.abs(chunk - reference).max() < 0.5, spec  # mild compression keeps the plan close
    assert np.array_equal(base.act(obs), reference)  # the base policy is untouched


def test_first_episodes_keeps_exactly_the_requested_episodes():
    from policies.tinyvla.train import first_episodes

    data = {"action": np.arange(7.0)[:, None], "episode": np.array([0, 0, 1, 1, 1, 2, 2]),
            "seed": np.array([10, 11, 12]), "instruction": np.asarray("lift"), "attempts": np.asarray(5)}
    kept = first_episodes(data, 2)
    np.testing.assert_array_equal(kept["action"][:, 0], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(kept["episode"], [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(kept["seed"], [10, 11])
    assert str(kept["instruction"]) == "lift"


def test_parallel_collection_is_sharded_by_seed_not_by_worker(tmp_path, monkeypatch):
    """Two worker processes, one-episode shards: shard 0 is exactly the first episode of a
    sequential collection, shard 1 starts a seed block of its own, and the merged file holds both."""
    from policies.tinyvla import demos

    monkeypatch.setattr(demos, "SHARD_EPISODES", 1)
    spec = demos.DemoSpec("Lift", 2, image_size=32)
    merged = tmp_path / "parallel" / "Lift.npz"
    demos.collect_parallel([(spec, merged)], workers=2)
    sequential = demos.load(demos.collect(demos.DemoSpec("Lift", 1, image_size=32), tmp_path / "seq" / "Lift.npz"))
    data = demos.load(merged)
    assert data["seed"][0] == sequential["seed"][0]
    assert data["seed"][1] >= spec.seed_start + demos.SHARD_SEED_STRIDE
    first = data["episode"] == 0
    np.testing.assert_array_equal(data["image"][first], sequential["image"])
    np.testing.assert_array_equal(data["action"][first], sequential["action"])
    assert set(np.unique(data["episode"])) == {0, 1}
    assert len(data["action"]) == len(data["image"]) == len(data["episode"])
    assert not list(merged.parent.glob(".Lift.shard*"))  # shards are removed once merged
