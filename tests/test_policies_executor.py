"""Policy interface, chunk execution schedules, action normalisation, the Lift expert."""

import gymnasium as gym
import numpy as np
import pytest

from policies import ActionNormalizer, ChunkExecutor, Policy, check_chunk
from policies.experts import LiftExpert


class CountingPolicy(Policy):
    """Chunk row j of the call made at step s is [s, j]: the executed schedule is readable."""

    action_dim = 2

    def __init__(self, chunk_size=4):
        self.chunk_size = chunk_size
        self.calls = 0

    def reset(self, instruction=""):
        super().reset(instruction)
        self.calls = 0

    def act(self, obs):
        self.calls += 1
        step = float(obs)
        return np.array([[step, j] for j in range(self.chunk_size)], dtype=np.float32)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_open_loop_executes_k_then_replans(k):
    executor = ChunkExecutor(CountingPolicy(4), "open_loop", execute_steps=k)
    executor.reset("do it")
    actions = np.stack([executor.step(t) for t in range(10)])
    assert executor.inference_calls == -(-10 // k)  # ceil(10 / k)
    expected = [[(t // k) * k, t % k] for t in range(10)]
    np.testing.assert_array_equal(actions, expected)
    assert executor.policy.instruction == "do it"


def test_temporal_ensemble_weights_are_acts_exponential():
    m = 0.5
    executor = ChunkExecutor(CountingPolicy(3), "temporal_ensemble", ensemble_coefficient=m)
    outputs = [executor.step(t) for t in range(5)]
    assert executor.inference_calls == 5
    # step 3 is covered by the chunks queried at steps 1, 2, 3 (chunk length 3), oldest first:
    # predictions [1, 2], [2, 1], [3, 0] with weights exp(0), exp(-m), exp(-2m)
    w = np.exp(-m * np.arange(3))
    expected = (w[:, None] * np.array([[1, 2], [2, 1], [3, 0]])).sum(0) / w.sum()
    np.testing.assert_allclose(outputs[3], expected, rtol=1e-6)
    # m = 0 is a plain mean; step 0 sees one chunk only
    flat = ChunkExecutor(CountingPolicy(3), "temporal_ensemble", ensemble_coefficient=0.0)
    steps = [flat.step(t) for t in range(4)]
    np.testing.assert_array_equal(steps[0], [0, 0])
    np.testing.assert_allclose(steps[3], np.mean([[1, 2], [2, 1], [3, 0]], axis=0))


def test_executor_rejects_bad_settings_and_chunks():
    with pytest.raises(ValueError, match=r"execute_steps=5: expected 1..4"):
        ChunkExecutor(CountingPolicy(4), execute_steps=5)
    with pytest.raises(ValueError, match="schedule='greedy'"):
        ChunkExecutor(CountingPolicy(4), "greedy")
    with pytest.raises(ValueError, match=r"shape \(3, 5\), expected \(H, 2\)"):
        check_chunk(np.zeros((3, 5)), 2)
    with pytest.raises(ValueError, match=r"non-finite actions in chunk rows \[1\]"):
        check_chunk([[0, 0], [np.nan, 0]], 2)
    np.testing.assert_array_equal(check_chunk([1.0, 2.0], 2), [[1.0, 2.0]])


def test_action_normalizer_round_trip_and_bounds():
    norm = ActionNormalizer.from_bounds([-2.0, 0.0], [2.0, 10.0])
    np.testing.assert_allclose(norm.normalize([[-2.0, 0.0], [2.0, 10.0], [0.0, 5.0]]), [[-1, -1], [1, 1], [0, 0]])
    rng = np.random.default_rng(0)
    actions = rng.normal([1.0, -3.0], [0.5, 2.0], size=(1000, 2))
    data_norm = ActionNormalizer.from_data(actions)
    z = data_norm.normalize(actions)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-5)
    np.testing.assert_allclose(data_norm.unnormalize(z), actions, atol=1e-5)
    restored = ActionNormalizer.from_dict(data_norm.to_dict())
    np.testing.assert_array_equal(restored.offset, data_norm.offset)
    np.testing.assert_array_equal(restored.scale, data_norm.scale)
    with pytest.raises(ValueError, match="scale must be finite and positive"):
        ActionNormalizer(np.zeros(2), np.array([1.0, 0.0]))


def test_scripted_lift_expert_solves_a_seeded_episode():
    env = gym.make("vla_envs/Lift-v0")
    expert = LiftExpert(env)
    executor = ChunkExecutor(expert)
    obs, info = env.reset(seed=7)
    executor.reset(info["instruction"])
    for _ in range(env.spec.max_episode_steps):
        obs, _, terminated, truncated, info = env.step(executor.step(obs))
        if terminated or truncated:
            break
    env.close()
    assert terminated and info["is_success"]
    assert executor.inference_calls == executor.t < 60


@pytest.mark.parametrize(
    "task, expert_name, max_steps",
    [("Stack", "StackExpert", 150), ("PickPlaceCan", "PickPlaceCanExpert", 200), ("Door", "DoorExpert", 300)],
)
def test_pick_and_place_experts_solve_seeded_episodes(task, expert_name, max_steps):
    from policies import experts

    env = gym.make(f"vla_envs/{task}-v0")
    expert = getattr(experts, expert_name)(env)
    obs, info = env.reset(seed=0)
    expert.reset(info["instruction"])
    for step in range(max_steps):
        obs, _, terminated, truncated, info = env.step(expert.act(obs)[0])
        if terminated or truncated:
            break
    env.close()
    assert terminated and info["is_success"], f"{task} not solved; expert ended in phase {expert.phase}"


def test_needs_query_tells_when_the_next_step_queries():
    from policies.base import Policy

    class Counter(Policy):
        action_dim, chunk_size = 2, 4

        def act(self, obs):
            return np.zeros((4, 2), np.float32)

    executor = ChunkExecutor(Counter(), "open_loop", execute_steps=3)
    pattern = []
    for _ in range(7):
        pattern.append(executor.needs_query)
        executor.step(None)
    assert pattern == [True, False, False, True, False, False, True]
    assert ChunkExecutor(Counter(), "temporal_ensemble").needs_query
