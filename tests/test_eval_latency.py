"""evaluation.run.latency: what the simulation executes while a chunk is being computed."""

import numpy as np
import pytest

from evaluation.run.config import DeviceLatency, FixedLatency
from evaluation.run.latency import (
    AsyncChunkExecutor,
    LatencyAwareExecutor,
    TimedChunkExecutor,
    delay_steps,
    latency_label,
)
from policies.base import Policy


class Counting(Policy):
    """Chunk i (0-based query count) holds actions 10*i + j in its row j (1-D actions)."""

    action_dim = 1

    def __init__(self, chunk_size: int):
        self.chunk_size = chunk_size
        self.queries = 0

    def reset(self, instruction=""):
        super().reset(instruction)
        self.queries = 0

    def act(self, obs):
        base = 10.0 * self.queries
        self.queries += 1
        return (base + np.arange(self.chunk_size, dtype=np.float32))[:, None]


def run(latency, steps, chunk_size=4, execute_steps=2, schedule="open_loop", freq=20.0):
    executor = LatencyAwareExecutor(
        TimedChunkExecutor(Counting(chunk_size), schedule, execute_steps), latency, freq
    )
    executor.reset("")
    out = [executor.step(None) for _ in range(steps)]
    return [float(a[0]) for a, _ in out], [(s.queried, s.waiting) for _, s in out], executor


def test_delay_steps_rounds_half_up():
    assert delay_steps(0.0, 20) == 0
    assert delay_steps(0.024, 20) == 0  # 0.48 steps
    assert delay_steps(0.025, 20) == 1  # 0.5 steps: half up (Python's round would give 0)
    assert delay_steps(0.13, 20) == 3  # 2.6 steps
    assert delay_steps(0.125, 20) == 3  # 2.5 steps
    with pytest.raises(ValueError):
        delay_steps(-1.0, 20)


def test_frozen_executes_chunks_back_to_back():
    actions, sources, executor = run("frozen", 6)
    assert actions == [0, 1, 10, 11, 20, 21]
    assert [q for q, _ in sources] == [True, False, True, False, True, False]
    assert executor.inference_calls == 3 and executor.waiting_steps == 0


def test_fixed_latency_executes_the_previous_chunk_while_computing():
    # 100 ms at 20 Hz = 2 control steps. Chunk 0 is free (the clock starts when it is ready);
    # chunk 1 is queried at step 2, and steps 2-3 run chunk 0's unexecuted rows 2 and 3.
    actions, sources, executor = run(FixedLatency(fixed_ms=100), 10)
    assert actions == [0, 1, 2, 3, 10, 11, 12, 13, 20, 21]
    assert sources[2] == (True, True) and sources[3] == (False, True) and sources[4] == (False, False)
    assert executor.inference_calls == 3 and executor.waiting_steps == 4


def test_fixed_latency_holds_the_last_action_when_the_chunk_is_used_up():
    # execute_steps = chunk size: nothing is left over, the last action is held for 3 steps
    actions, _, executor = run(FixedLatency(fixed_ms=150), 9, chunk_size=2, execute_steps=2)
    assert actions == [0, 1, 1, 1, 1, 10, 11, 11, 11]
    assert executor.waiting_steps == 5


def test_temporal_ensemble_continues_the_previous_chunk():
    actions, sources, _ = run(FixedLatency(fixed_ms=50), 5, chunk_size=4, schedule="temporal_ensemble", execute_steps=None)
    # step 0: first query (free); step 1: query 2 in flight for 1 step -> chunk 0 row 1;
    # step 2: chunk 1's ensemble action arrives
    assert actions[0] == 0 and actions[1] == 1
    assert sources[1] == (True, True) and sources[2] == (False, False)


def test_measured_latency_uses_each_querys_own_time(monkeypatch):
    import evaluation.run.latency as latency

    # query i starts at i s and takes durations[i]: 0.15 s = 3 steps at 20 Hz, 0.05 s = 1, 0.10 s = 2
    # (the first query is free whatever it takes)
    durations = [0.01, 0.15, 0.05, 0.10]
    clock = iter([t for i, d in enumerate(durations) for t in (float(i), i + d)])
    monkeypatch.setattr(latency.time, "perf_counter", lambda: next(clock))
    actions, sources, executor = run("measured", 14)
    assert executor.latencies_s == pytest.approx(durations)
    # chunk 0 runs 0, 1; query 1 waits 3 steps on chunk 0's rows 2, 3 and then holds 3; chunk 1
    # runs 10, 11; query 2 waits 1 step on row 12; query 3 waits 2 steps on rows 22, 23
    assert actions == [0, 1, 2, 3, 3, 10, 11, 12, 20, 21, 22, 23, 30, 31]
    assert [i for i, (_, waiting) in enumerate(sources) if waiting] == [2, 3, 4, 7, 10, 11]
    assert executor.waiting_steps == 3 + 1 + 2 and executor.inference_calls == 4


def test_docs_worked_example():
    # docs/evaluation.md: 20 Hz, H = 8, k = 4, 130 ms -> 3 waiting steps per chunk
    frozen, _, _ = run("frozen", 15, chunk_size=8, execute_steps=4)
    assert frozen == [0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23, 30, 31, 32]
    fixed, sources, executor = run(FixedLatency(fixed_ms=130), 15, chunk_size=8, execute_steps=4)
    assert fixed == [0, 1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 14, 15, 16, 20]
    assert [i for i, (queried, _) in enumerate(sources) if queried] == [0, 4, 11]
    assert [i for i, (_, waiting) in enumerate(sources) if waiting] == [4, 5, 6, 11, 12, 13]


# -- edges (each found by a surviving mutant, docs/testing.md) ----------------------------------
def test_delay_steps_checks_its_inputs_and_takes_any_positive_rate():
    assert delay_steps(1.0, 0.5) == 1  # 0.5 steps at 0.5 Hz: half up
    for bad in ((-0.1, 20.0), (0.1, 0.0)):
        with pytest.raises(ValueError, match=rf"inference_s={bad[0]}, control_freq_hz={bad[1]}: expected >= 0 and > 0"):
            delay_steps(*bad)


def test_latency_labels():
    assert latency_label("frozen") == "frozen" and latency_label("measured") == "measured"
    assert latency_label(FixedLatency(fixed_ms=50)) == "fixed_50ms"
    assert latency_label(FixedLatency(fixed_ms=12.5)) == "fixed_12.5ms"
    assert latency_label("profiled", 3.6249) == "profiled_3.62ms"
    assert latency_label(DeviceLatency(device="jetson_orin_nano"), 3.0421) == "jetson_orin_nano_3.04ms"
    with pytest.raises(ValueError, match=r"latency='slow': expected 'frozen', 'measured', 'profiled', \{fixed_ms: X\} or \{device: NAME\}"):
        LatencyAwareExecutor(TimedChunkExecutor(Counting(4), "open_loop", 2), "slow", 20.0)
    with pytest.raises(ValueError, match="'profiled' needs its resolved latency in ms .* got None"):
        LatencyAwareExecutor(TimedChunkExecutor(Counting(4), "open_loop", 2), "profiled", 20.0)
    with pytest.raises(ValueError, match="'rtx_4090' needs its resolved latency in ms .* got None"):
        LatencyAwareExecutor(TimedChunkExecutor(Counting(4), "open_loop", 2), DeviceLatency(device="rtx_4090"), 20.0)


def test_a_fixed_latency_of_half_a_step_waits_one_step():
    actions, sources, executor = run(FixedLatency(fixed_ms=25), 6)  # 0.5 steps at 20 Hz: half up
    assert executor.waiting_steps == 2
    assert actions == [0, 1, 2, 10, 11, 12]


def test_frozen_ignores_how_long_a_query_takes(monkeypatch):
    import evaluation.run.latency as latency

    clock = iter(np.arange(0.0, 100.0, 0.5))  # every query takes 500 ms of wall clock
    monkeypatch.setattr(latency.time, "perf_counter", lambda: next(clock))
    actions, sources, executor = run("frozen", 6)
    assert actions == [0, 1, 10, 11, 20, 21] and executor.waiting_steps == 0
    assert executor.latencies_s == pytest.approx([0.5, 0.5, 0.5])


def test_a_measured_latency_under_half_a_step_costs_no_step(monkeypatch):
    import evaluation.run.latency as latency

    clock = iter(np.arange(0.0, 100.0, 0.01))  # 10 ms per query: 0.2 steps
    monkeypatch.setattr(latency.time, "perf_counter", lambda: next(clock))
    actions, sources, _ = run("measured", 6)
    assert actions == [0, 1, 10, 11, 20, 21]
    assert sources == [(True, False), (False, False)] * 3


class Recording(Counting):
    """Counting, remembering the instruction and observations it was given (float64 chunks)."""

    def reset(self, instruction=""):
        super().reset(instruction)
        self.seen = []

    def act(self, obs):
        self.seen.append(obs)
        return super().act(obs).astype(np.float64)


def test_the_policy_sees_the_instruction_and_each_queried_observation_and_actions_are_float32():
    policy = Recording(4)
    executor = LatencyAwareExecutor(TimedChunkExecutor(policy, "open_loop", 2), FixedLatency(fixed_ms=100), 20.0)
    executor.reset("stack the cubes")
    emitted = [executor.step({"t": t})[0] for t in range(8)]
    assert policy.instruction == "stack the cubes"
    assert [obs["t"] for obs in policy.seen] == [0, 2, 6]
    assert all(a.dtype == np.float32 for a in emitted)


def test_reset_without_an_instruction_gives_the_policy_an_empty_one():
    policy = Recording(4)
    executor = LatencyAwareExecutor(TimedChunkExecutor(policy, "open_loop", 2), "frozen", 20.0)
    executor.reset()
    assert policy.instruction == ""
    executor.executor.reset()
    assert policy.instruction == ""


class SevenD(Policy):
    """OSC_POSE-shaped chunks: row j of chunk i moves +x by 0.1 * (j + 1) and closes the gripper."""

    action_dim = 7

    def __init__(self):
        self.chunk_size = 2

    def act(self, obs):
        chunk = np.zeros((2, 7), np.float32)
        chunk[:, 0] = [0.1, 0.2]
        chunk[:, 6] = 1.0
        return chunk


@pytest.mark.parametrize("on_empty", ["hold_position", "repeat_last"])
def test_what_the_robot_does_once_the_chunk_is_used_up(on_empty):
    """150 ms at 20 Hz = 3 steps; with k = H = 2 nothing of the previous chunk is left, so the
    robot waits 3 steps: with hold_position it asks the arm for no motion (gripper kept closed),
    with repeat_last it repeats +x 0.2, which under a delta controller keeps the arm moving."""
    from functools import partial

    from vla_envs.controllers import hold_position_action

    hold = partial(hold_position_action, "OSC_POSE") if on_empty == "hold_position" else None
    executor = LatencyAwareExecutor(TimedChunkExecutor(SevenD(), "open_loop", 2), FixedLatency(fixed_ms=150), 20.0, hold)
    executor.reset("")
    steps = [executor.step(None) for _ in range(6)]
    actions = np.stack([a for a, _ in steps])
    waiting = [s.waiting for _, s in steps]
    assert waiting == [False, False, True, True, True, False]
    np.testing.assert_allclose(actions[:2, 0], [0.1, 0.2])
    held_x = 0.0 if on_empty == "hold_position" else 0.2
    np.testing.assert_allclose(actions[2:5, 0], [held_x] * 3)
    np.testing.assert_allclose(actions[:, 6], 1.0)  # the gripper stays closed either way
    np.testing.assert_allclose(actions[2:5, 1:6], 0.0)
    np.testing.assert_allclose(actions[5], [0.1, 0, 0, 0, 0, 0, 1.0])  # the new chunk arrives


def test_hold_position_zeroes_each_controllers_arm_dimensions():
    from vla_envs.controllers import CONTROLLERS, arm_action_dims, hold_position_action

    for controller in CONTROLLERS:
        arm = arm_action_dims(controller)  # the Panda's
        last = np.arange(1.0, arm + 2.0, dtype=np.float32)  # arm dims + a gripper
        held = hold_position_action(controller, last)
        assert (held[:arm] == 0).all() and held[arm] == last[arm] and last[0] == 1.0  # input untouched
    with pytest.raises(ValueError, match="not supported"):
        hold_position_action("OSC_WRONG", np.zeros(7))


def test_chunk_starts_mark_where_a_new_plan_begins():
    from evaluation.run.latency import StepSource, seam_mask

    def seams(latency, steps):
        executor = LatencyAwareExecutor(TimedChunkExecutor(Counting(4), "open_loop", 2), latency, 20.0)
        executor.reset("")
        return seam_mask([StepSource(False, False)] + [executor.step(None)[1] for _ in range(steps)])

    # frozen, k = 2: queries on steps 1, 3, 5 (row 0 is the reset); the first chunk is no seam
    assert seams("frozen", 6).tolist() == [False, False, False, True, False, True, False]
    # 100 ms = 2 waiting steps: query on step 3 waits on steps 3-4, the chunk arrives on step 5
    assert np.flatnonzero(seams(FixedLatency(fixed_ms=100), 10)).tolist() == [5, 9]


def test_profiled_latency_is_measured_once_recorded_and_then_deterministic(tmp_path):
    """A `latency: profiled` variant gets its profile() median before the episodes, recorded in
    run.json; pinning that value reproduces the episodes exactly, and a pinned 100 ms behaves
    like `fixed_ms: 100`."""
    import json

    from eval_helpers import SMALL, deterministic_episodes, small_config

    from evaluation import run_eval

    text = SMALL.replace("latency: {fixed_ms: 100}}", "latency: profiled}")
    _, config = small_config(tmp_path, text)
    first = run_eval(config, tmp_path / "first", progress=False)
    recorded = json.loads((tmp_path / "first" / "run.json").read_text())["config"]["resolved_latency_ms"]
    assert list(recorded) == ["Lift/int4_100ms"] and recorded["Lift/int4_100ms"] > 0
    labels = {r["variant"]: r["latency_model"] for r in first.summary}
    assert labels["int4_100ms"].startswith("profiled_") and labels["perturbed"] == "frozen"

    pinned = config.model_copy(update={"resolved_latency_ms": recorded})
    run_eval(pinned, tmp_path / "second", progress=False)
    assert deterministic_episodes(tmp_path / "second" / "episodes.parquet") == deterministic_episodes(tmp_path / "first" / "episodes.parquet")

    slow = config.model_copy(update={"resolved_latency_ms": {"Lift/int4_100ms": 100.0}})
    fixed = small_config(tmp_path, SMALL, "fixed.yaml")[1]
    run_eval(slow, tmp_path / "slow", progress=False)
    run_eval(fixed, tmp_path / "fixed", progress=False)
    waits = {}
    for name in ("slow", "fixed"):
        rows = deterministic_episodes(tmp_path / name / "episodes.parquet")
        waits[name] = [(r["seed"], r["waiting_steps"], r["energy_j"]) for r in rows if r["variant"] == "int4_100ms"]
    assert waits["slow"] == waits["fixed"] and all(w > 0 for _, w, _ in waits["slow"])


# -- asynchronous execution (docs/evaluation.md, "Asynchronous execution") -----------------------
def run_async(latency, steps, chunk_size=8, execute_steps=8, remaining=3, freq=20.0, hold=None):
    executor = AsyncChunkExecutor(TimedChunkExecutor(Counting(chunk_size), "open_loop", execute_steps),
                                  latency, freq, remaining, hold)
    executor.reset("")
    out = [executor.step(None) for _ in range(steps)]
    return [float(a[0]) for a, _ in out], [s for _, s in out], executor


def test_async_docs_worked_example():
    """20 Hz, H = k = 8, query when 3 actions are left, 130 ms (3 steps): chunk A runs A0-A4,
    the query on step 5 (A's 3 last actions left) is in flight on steps 5-7 while A5-A7 run;
    B arrives on step 8 with B0-B2 planned for steps 5-7 (stale, dropped): B3 runs on step 8."""
    actions, sources, executor = run_async(FixedLatency(fixed_ms=130), 16)
    assert actions == [0, 1, 2, 3, 4, 5, 6, 7, 13, 14, 15, 16, 17, 23, 24, 25]
    # every chunk after the first runs 5 actions (3 of its 8 are stale) and is asked for with 3 left
    assert [i for i, s in enumerate(sources) if s.queried] == [0, 5, 10, 15]
    assert [i for i, s in enumerate(sources) if s.chunk_start] == [0, 8, 13]
    assert not any(s.waiting for s in sources) and executor.waiting_steps == 0
    assert executor.stale_actions == 3 + 3 and executor.inference_calls == 4


def test_async_waits_once_the_latency_outlasts_what_is_left():
    """300 ms = 6 steps but only 3 actions left: steps 8-10 hold position (on_empty), B's
    first 6 actions are stale; B6 and B7 run, and the next query starts on step 11 (2 left <= 3)."""
    hold = lambda last: np.zeros_like(last) - 1.0  # noqa: E731  (a recognisable filler)
    actions, sources, executor = run_async(FixedLatency(fixed_ms=300), 14, hold=hold)
    assert actions[:8] == [0, 1, 2, 3, 4, 5, 6, 7]
    assert actions[8:11] == [-1.0, -1.0, -1.0] and [s.waiting for s in sources[8:11]] == [True] * 3
    assert actions[11:13] == [16, 17] and sources[11].chunk_start and sources[11].queried
    assert executor.waiting_steps == 3 + 1 and executor.stale_actions == 6


def test_async_with_frozen_time_is_open_loop_with_fewer_steps_per_chunk():
    """Frozen: each chunk arrives on the step it is asked for, so querying with 3 of 8 left is
    open loop executing 5 actions per chunk; and with 0 left it is plain open loop."""
    actions, sources, executor = run_async("frozen", 12)
    assert actions == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14, 20, 21]
    assert executor.stale_actions == 0 and executor.waiting_steps == 0
    frozen_open_loop, _, _ = run("frozen", 12, chunk_size=8, execute_steps=8)
    assert run_async("frozen", 12, remaining=0)[0] == frozen_open_loop


def test_async_checks_its_settings():
    with pytest.raises(ValueError, match=r"query_when_remaining=8: expected 0..7"):
        AsyncChunkExecutor(TimedChunkExecutor(Counting(8), "open_loop", 8), "frozen", 20.0, 8)
    with pytest.raises(ValueError, match="open-loop executor"):
        AsyncChunkExecutor(TimedChunkExecutor(Counting(8), "temporal_ensemble"), "frozen", 20.0, 1)


def test_async_config_needs_query_when_remaining_and_only_with_async():
    from pydantic import ValidationError

    from evaluation.run.config import ExecutionConfig

    with pytest.raises(ValidationError, match="schedule 'async' needs 'query_when_remaining'"):
        ExecutionConfig(schedule="async")
    with pytest.raises(ValidationError, match="applies to schedule 'async', not 'open_loop'"):
        ExecutionConfig(query_when_remaining=2)
    assert ExecutionConfig(schedule="async", query_when_remaining=2).executor_kwargs()["schedule"] == "open_loop"


# -- device models -------------------------------------------------------------------------------
def test_device_latency_is_flops_over_throughput_plus_overhead():
    from evaluation.run.devices import DeviceModel, device_latency_ms, shipped_devices

    device = DeviceModel(effective_tflops=2.0, overhead_ms=1.5)
    assert device_latency_ms(0, device) == 1.5
    assert device_latency_ms(4e9, device) == pytest.approx(2.0 + 1.5)  # 4 GFLOP at 2 TFLOP/s = 2 ms
    with pytest.raises(ValueError, match="flops_per_call=nan"):
        device_latency_ms(float("nan"), device)
    table = shipped_devices()
    assert {"jetson_orin_nano", "jetson_agx_orin", "rtx_4090", "h100_sxm", "raspberry_pi_5"} <= set(table)
    assert all(d.description and d.source for d in table.values())


def test_an_unknown_device_fails_at_load_time(tmp_path):
    from eval_helpers import SMALL, small_config

    from vla_envs.config import ConfigError

    with pytest.raises(ConfigError, match=r"latency device 'tpu9' is not in .* expected one of \["):
        small_config(tmp_path, SMALL.replace("latency: {fixed_ms: 100}}", "latency: {device: tpu9}}"))
    own = SMALL.replace("latency: {fixed_ms: 100}}", "latency: {device: tpu9}}") + (
        "devices: {tpu9: {effective_tflops: 0.001, overhead_ms: 2}}\n")
    assert small_config(tmp_path, own)[1].device_table()["tpu9"].overhead_ms == 2


def test_device_latency_is_resolved_before_the_episodes_and_deterministic(tmp_path):
    """`latency: {device: NAME}`: FLOPs per call from profile() through the device model,
    recorded in run.json; two runs give identical episodes, and the same value pinned as a
    fixed latency gives the same episodes too."""
    import json

    from eval_helpers import SMALL, deterministic_episodes, small_config

    from evaluation import run_eval
    from evaluation.run.devices import device_latency_ms

    text = SMALL.replace("latency: {fixed_ms: 100}}", "latency: {device: slow_chip}}") + (
        "devices: {slow_chip: {effective_tflops: 0.0000001, overhead_ms: 40}}\n")
    _, config = small_config(tmp_path, text)
    first = run_eval(config, tmp_path / "first", progress=False)
    info = json.loads((tmp_path / "first" / "run.json").read_text())
    flops = info["profiles"]["Lift/int4_100ms"]["flops_per_call"]
    recorded = info["config"]["resolved_latency_ms"]["Lift/int4_100ms"]
    assert flops > 0 and recorded == pytest.approx(device_latency_ms(flops, config.devices["slow_chip"]))
    assert {r["variant"]: r["latency_model"] for r in first.summary}["int4_100ms"] == f"slow_chip_{recorded:.3g}ms"
    run_eval(config, tmp_path / "second", progress=False)
    episodes = deterministic_episodes(tmp_path / "first" / "episodes.parquet")
    assert deterministic_episodes(tmp_path / "second" / "episodes.parquet") == episodes
    assert all(r["waiting_steps"] > 0 for r in episodes if r["variant"] == "int4_100ms")


def test_device_latency_needs_a_torch_module(tmp_path):
    from eval_helpers import SMALL, small_config

    from evaluation import run_eval
    from vla_envs.config import ConfigError

    text = SMALL.replace("{name: expert, policy: {kind: expert}}", "{name: expert, policy: {kind: expert}, latency: {device: rtx_4090}}")
    _, config = small_config(tmp_path, text)
    with pytest.raises(ConfigError, match="variant 'expert': latency {device: rtx_4090} needs FLOPs per call"):
        run_eval(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "parts").exists()  # no episode ran


def test_async_episodes_count_stale_actions_and_waits(tmp_path):
    """An async variant in a real run: steps.parquet's flags add up to the episode's counts,
    and the seam columns follow the chunk_start flags."""
    import pandas as pd
    from eval_helpers import SMALL, small_config

    from evaluation import run_eval

    text = SMALL.replace(
        "latency: {fixed_ms: 100}}",
        "latency: {fixed_ms: 100}, execution: {schedule: async, query_when_remaining: 1, execute_steps: 4}}")
    _, config = small_config(tmp_path, text)
    run_eval(config, tmp_path / "run", progress=False)
    episodes = pd.read_parquet(tmp_path / "run" / "episodes.parquet").set_index(["variant", "seed"])
    steps = pd.read_parquet(tmp_path / "run" / "steps.parquet")
    for seed in (0, 1):
        row = episodes.loc[("int4_100ms", seed)]
        rows = steps[(steps.variant == "int4_100ms") & (steps.seed == seed)]
        # 2 steps of latency, 1 action left at each query: 2 stale actions per chunk after the
        # first (those planned for the 2 steps in flight), and a chunk start on every arrival
        arrivals = int(rows["chunk_start"].sum())
        assert row["inference_calls"] == int(rows["queried"].sum())
        assert row["waiting_steps"] == int(rows["waiting"].sum()) > 0
        assert row["stale_actions"] == 2 * (arrivals - 1) > 0
    assert (episodes.loc["perturbed", "stale_actions"] == 0).all()


def test_a_resolved_latency_is_one_typed_object_per_task_and_variant():
    """``ResolvedLatency.of`` turns each latency model into what the executor applies; the run
    plan carries one per (task, variant) to the workers, unchanged through JSON."""
    from evaluation.run.latency import ResolvedLatency
    from evaluation.run.plan import RunPlan

    assert ResolvedLatency.of("frozen") == ResolvedLatency("frozen", "frozen")
    assert ResolvedLatency.of("measured") == ResolvedLatency("measured", "measured")
    assert ResolvedLatency.of(FixedLatency(fixed_ms=100)) == ResolvedLatency("fixed", "fixed_100ms", 100.0)
    assert ResolvedLatency.of("profiled", 3.62) == ResolvedLatency("fixed", "profiled_3.62ms", 3.62)
    assert ResolvedLatency.of(DeviceLatency(device="rtx_4090"), 2.1) == ResolvedLatency("fixed", "rtx_4090_2.1ms", 2.1)
    plan = RunPlan({("Lift", "base"): ResolvedLatency.of("frozen"),
                    ("Lift", "slow"): ResolvedLatency.of("profiled", 3.62)})
    assert RunPlan.from_json(plan.to_json()) == plan
    with pytest.raises(KeyError, match="no latency for variant 'other' on Lift"):
        plan.latency("Lift", "other")


def test_run_eval_resolves_the_latencies_once(tmp_path, monkeypatch):
    """The driver resolves every latency once per run_eval and hands the plan to the workers (it
    used to resolve them again before the summary, reading run.json back)."""
    from eval_helpers import SMALL, small_config

    import evaluation.runner as runner

    calls = []
    original = runner.resolve_latencies
    monkeypatch.setattr(runner, "resolve_latencies", lambda *a, **k: calls.append(1) or original(*a, **k))
    _, config = small_config(tmp_path, SMALL.replace("latency: {fixed_ms: 100}}", "latency: profiled}"))
    runner.run_eval(config, tmp_path / "out", progress=False)
    assert len(calls) == 1
