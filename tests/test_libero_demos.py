"""LIBERO demonstrations (``policies.libero_demos``): collected from LIBERO's placement sampler,
never from a standard initial state (the test set), in resumable shards, with a config that
fails at load time."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("libero", reason='LIBERO is not installed: pip install -e ".[libero]"')

from policies import libero_demos  # noqa: E402
from policies.libero_demos import (  # noqa: E402
    LiberoDemoConfig,
    nearest_standard_layout_m,
    object_joint_addresses,
    object_layouts,
)
from vla_envs.config import ConfigError, load_config  # noqa: E402


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    out = tmp_path_factory.mktemp("demos")
    config = LiberoDemoConfig(suites=["libero_spatial"], tasks=[0], episodes_per_task=2, image_size=64, out=out)
    paths = libero_demos.collect(config, workers=1, progress=False)
    return config, paths


def test_a_shard_holds_successful_episodes_frame_by_frame(collected):
    config, paths = collected
    assert [path.name for path in paths] == ["shard000.npz"]
    data = libero_demos.load_task(config.out, "libero_spatial", 0)
    frames = len(data["action"])
    assert data["image"].shape == data["wrist_image"].shape == (frames, 64, 64, 3)
    assert data["libero_state"].shape == (frames, 8) and data["action"].shape == (frames, 7)
    assert sorted(set(data["episode"].tolist())) == [0, 1]
    assert len(data["seed"]) == 2 and data["seed"].min() >= libero_demos.DEMO_SEED_START
    assert str(data["instruction"]).startswith("pick up the black bowl")
    # the label is the expert's clean action: a gripper command of exactly -1 or +1
    assert set(np.unique(data["action"][:, 6]).tolist()) <= {-1.0, 1.0}


def test_no_demonstration_starts_from_a_standard_initial_state(collected, libero_envs):
    config, _ = collected
    env = libero_envs.get("LIBERO-Spatial", 0).unwrapped
    model = env.robosuite_env.sim.model._model
    addresses = object_joint_addresses(model)
    assert len(addresses) >= 5  # bowls, plate, ramekin, cookie box...
    standard_qpos = env.init_states[:, 1:1 + model.nq]  # rows are [time, qpos, qvel]
    standard = object_layouts(standard_qpos, addresses)
    # the check can fail: a standard state is 0 m from the standard set
    assert nearest_standard_layout_m(standard[:3], standard).max() == 0.0
    data = libero_demos.load_task(config.out, "libero_spatial", 0)
    demos = object_layouts(data["initial_qpos"], addresses)
    # settling moves objects by millimetres; the sampler's layouts differ by centimetres
    assert nearest_standard_layout_m(demos, standard).min() > 0.01


def test_a_finished_shard_is_not_collected_again(collected, monkeypatch):
    config, paths = collected
    before = paths[0].stat().st_mtime_ns

    def no_env(*args, **kwargs):
        raise AssertionError("every shard is on disk: no env should be built")

    monkeypatch.setattr(libero_demos, "make_env", no_env)
    assert libero_demos.collect(config, workers=1, progress=False) == paths
    assert paths[0].stat().st_mtime_ns == before


def test_shards_depend_on_the_config_not_on_the_workers():
    config = LiberoDemoConfig(suites=["libero_object"], tasks=[2, 5], episodes_per_task=25)
    jobs = libero_demos.shards(config)
    assert [(job.task, job.index, job.episodes, job.seed_start) for job in jobs] == [
        (2, 0, 10, 1000), (2, 1, 10, 101_000), (2, 2, 5, 201_000),
        (5, 0, 10, 1000), (5, 1, 10, 101_000), (5, 2, 5, 201_000)]


@pytest.mark.parametrize("field, value, expected", [
    ("seed_start", 10, "greater than or equal to 1000"),
    ("episodes_per_task", 0, "greater than or equal to 1"),
    ("colour", "red", "extra inputs are not permitted"),
    ("suites", ["libero_100"], "expected LIBERO suites among"),
    ("tasks", [10], "10 is not a task of libero_spatial (0 to 9)"),
])
def test_a_bad_config_fails_at_load_naming_the_field(tmp_path, field, value, expected):
    path = tmp_path / "demos.yaml"
    fields = {"suites": ["libero_spatial"], "episodes_per_task": 5}
    fields[field] = value
    path.write_text("".join(f"{key}: {value!r}\n" for key, value in fields.items()))
    with pytest.raises(ConfigError, match=field) as error:
        load_config(path, LiberoDemoConfig)
    assert expected in str(error.value)


def test_the_shipped_config_loads_and_asks_for_lean_128_px_frames():
    config = load_config("configs/demos/libero.yaml", LiberoDemoConfig)
    assert config.image_size == 128 and config.seed_start >= libero_demos.DEMO_SEED_START
    assert len(libero_demos.shards(config)) == 2 * 10 * 5


def test_a_model_trains_on_them_with_a_byte_level_tokenizer_and_libero_state(collected, tmp_path, libero_envs):
    """The LIBERO reference model's recipe end to end at toy size: the trainer reads the shards
    through a LIBERO demos config, tokenizes with byte-level BPE, reads ``libero_state``; the
    checkpoint loads as a policy that acts on the env's observation."""
    import yaml

    from policies.tinyvla import checkpoint
    from policies.tinyvla.policy import load_reference
    from policies.tinyvla.train import TrainConfig, train

    config, _ = collected
    demos_yaml = tmp_path / "demos.yaml"
    demos_yaml.write_text(yaml.safe_dump({**config.model_dump(mode="json"), "out": str(config.out)}))
    train_config = TrainConfig.model_validate({
        "demos": {"libero": str(demos_yaml)},
        "model": {"width": 32, "depth": 2, "heads": 2, "chunk_size": 4, "patch_sizes": {"image": 16, "wrist_image": 32},
                  "max_instruction_tokens": 24, "sparsify_after_block": 0, "tokenizer": "byte_bpe",
                  "proprio_key": "libero_state"},
        "train": {"steps": 2, "batch_size": 4, "warmup_steps": 1, "device": "cpu"},
        "output": {"directory": str(tmp_path / "weights"), "name": "toy"},
    })
    assert train_config.demos.image_size == 64  # from the demos config
    train(train_config)
    model, tokenizer, _, meta = checkpoint.load(tmp_path / "weights", "toy")
    assert meta["tokenizer"]["kind"] == "byte_bpe" and model.config.proprio_key == "libero_state"
    assert meta["training"]["episodes"] == {"LIBERO-Spatial-0": 2}
    assert tokenizer.encode("pick up the zebra")[:4] != tokenizer.encode("pick up the bowl")[:4]  # no <unk>
    policy = load_reference(tmp_path / "weights", "toy")
    env = libero_envs.get("LIBERO-Spatial", 0)
    obs, info = env.reset(seed=0, options={"init_state": 0})
    policy.reset(info["instruction"])
    chunk = policy.act(obs)
    assert chunk.shape == (4, 7) and np.isfinite(chunk).all()
