"""Many simulators, one model (``serving`` in an eval config, ``evaluation.backends.serving``): the
episodes of a run whose models answer from policy servers, locally and on a two-node Ray
cluster, equal the in-process run's, and the servers' statistics land in run.json."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from eval_helpers import deterministic_episodes

from evaluation.backends.serving import ServingError, plan_servers
from evaluation.run.config import EvalConfig
from evaluation.run.parts import PartStore
from evaluation.runner import run_episodes

# TinyVLA on short Lift episodes. `cached` is compressed in its server and reports per-episode
# counters and its own open-loop steps through the protocol; `slow` only retimes the base, so it
# is answered by the base's server; the expert reads the simulator and stays in the workers.
CONFIG = {
    "tasks": ["Lift"],
    "seeds": [0, 1],
    "env": {"obs_mode": "rgb", "image_size": 64, "max_episode_steps": 24},
    "base": {"name": "tinyvla", "policy": {"factory": "policies.tinyvla:load_reference"}},
    "variants": [
        {"name": "cached", "compression": {"token_cache": {"similarity": 0.999}, "execution": {"open_loop_steps": 2}}},
        {"name": "slow", "latency": {"fixed_ms": 100}},
        {"name": "expert", "policy": {"kind": "expert"}},
    ],
    "execution": {"schedule": "open_loop", "execute_steps": 4},
    "profile": {"enabled": False},
}


def _config(**changes) -> EvalConfig:
    return EvalConfig.model_validate({**CONFIG, **changes})


def _run(config: EvalConfig, out, **kwargs):
    units, ran = run_episodes(config, out, progress=False, **kwargs)
    assert ran == len(units)
    PartStore(out).consolidate(units)
    return out


def _assert_same(out, reference) -> None:
    assert deterministic_episodes(out / "episodes.parquet") == deterministic_episodes(reference / "episodes.parquet")
    assert pq.read_table(out / "steps.parquet").equals(pq.read_table(reference / "steps.parquet"))


def _serving_record(out) -> dict:
    return json.loads((out / "run.json").read_text())["calls"][-1]["serving"]


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    return _run(_config(), tmp_path_factory.mktemp("in_process") / "out")


def test_served_episodes_equal_the_in_process_run(in_process, tmp_path):
    out = _run(_config(serving={"max_batch": 1}), tmp_path / "served", workers=2)
    _assert_same(out, in_process)
    episodes = pq.read_table(out / "episodes.parquet").to_pylist()
    cached = [e for e in episodes if e["variant"] == "cached"]
    assert all(e["reused_image_tokens"] > 0 for e in cached)  # the server's counters reached the rows
    record = _serving_record(out)
    servers = {s["variant"]: s for s in record["servers"]}
    assert sorted(servers) == ["cached", "tinyvla"]  # the expert stays in the workers
    assert servers["tinyvla"]["variants"] == ["tinyvla", "slow"]
    config = _config()
    for name, server in servers.items():
        calls = sum(e["inference_calls"] for e in episodes if e["variant"] in server["variants"])
        # and the teacher-forced queries: each follower is asked on its reference's queries
        forced = sum(e["inference_calls"] for e in episodes for v in server["variants"]
                     if v != e["variant"] and config.reference_of(v) == e["variant"])
        assert server["stats"]["requests"] == calls + forced > calls, name
        assert server["stats"]["max_batch"] == 1


def test_the_command_line_serves_with_batching_and_records_the_batches(tmp_path):
    """``vla-envs eval --serve --max-batch 4`` on a config without ``serving``."""
    import yaml
    from typer.testing import CliRunner

    from cli.app import app

    config = tmp_path / "served.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "seeds": [0], "variants": []}))
    refused = CliRunner().invoke(app, ["eval", str(config), "--max-batch", "4"])
    assert refused.exit_code == 2 and "expected --serve with it" in refused.output
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["eval", str(config), "--out", str(out), "--serve", "--max-batch", "4"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    stats = _serving_record(out)["servers"][0]["stats"]
    calls = pq.read_table(out / "episodes.parquet").column("inference_calls").to_pylist()
    assert stats["max_batch"] == 4 and stats["requests"] == sum(calls) > 0
    # one simulator worker: every batch holds its one query, computed by the policy's own act
    assert stats["batch_sizes"] == {"1": sum(calls)}


def test_a_policy_at_an_existing_url_is_evaluated_as_in_process(in_process, tmp_path):
    """A server the user started (``python -m policies.remote serve``, one torch thread as the
    in-process run's workers have): ``{kind: http, url: ...}`` reaches it."""
    from policies.serving.launch import start_server_process

    proc, url = start_server_process(["--policy", "policies.tinyvla:load_reference", "--port", "0",
                                      "--torch-threads", "1"])
    try:
        config = _config(base={"name": "tinyvla", "policy": {"kind": "http", "url": url}},
                         variants=[{"name": "slow", "latency": {"fixed_ms": 100}}])
        out = _run(config, tmp_path / "url")
    finally:
        proc.terminate()
        proc.wait()
    def rows(path, variants=("tinyvla", "slow")):
        # teacher_forced lists the followers of each config, and this config has fewer
        return [{k: v for k, v in e.items() if k != "teacher_forced"}
                for e in deterministic_episodes(path / "episodes.parquet") if e["variant"] in variants]

    assert rows(out) == rows(in_process)


def test_what_cannot_be_served_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"'serving.variants' names 'expert', which cannot be served: .*simulator"):
        _config(serving={"variants": ["expert"]})
    with pytest.raises(ValueError, match=r"'serving.variants' names 'nope', expected some of"):
        _config(serving={"variants": ["nope"]})
    perturbed = {"name": "perturbed", "policy": {"factory": "policies.demo:perturbed_expert"}}
    config = EvalConfig.model_validate({**CONFIG, "env": {"obs_mode": "state"}, "base": perturbed, "variants": [],
                                        "serving": {}})
    with pytest.raises(ServingError, match=r"'perturbed': its policy factory takes `env`"):
        plan_servers(config)


def test_a_server_that_fails_to_load_stops_the_run_before_any_episode(tmp_path):
    config = _config(base={"name": "tinyvla", "policy": {"factory": "policies.tinyvla:load_reference",
                                                         "kwargs": {"name": "no-such-weights"}}},
                     variants=[], serving={})
    with pytest.raises(RuntimeError, match=r"the policy server for variant 'tinyvla' on Lift did not start: it exited with 1"):
        run_episodes(config, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "parts").exists() or not any((tmp_path / "out" / "parts").rglob("*.parquet"))


def test_a_two_node_ray_cluster_with_the_model_as_an_actor_gives_the_same_episodes(in_process, tmp_path):
    """The model's server on one node (the only one with the `model_node` resource, as a GPU node
    would be), the simulator workers on the other: the in-process run's episodes."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    # the head takes no simulator worker (no CPU to give): only the servers, one model_node each
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "resources": {"model_node": 2}})
    cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    try:
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        config = _config(serving={"ray_resources": {"model_node": 1, "CPU": 0}})
        out = _run(config, tmp_path / "ray", workers=2, backend="ray")
    finally:
        ray.shutdown()
        cluster.shutdown()
    _assert_same(out, in_process)
    assert sorted(s["variant"] for s in _serving_record(out)["servers"]) == ["cached", "tinyvla"]
