"""Many simulators, one model: the policy servers an evaluation starts (``serving`` in its config).

With ``serving``, the driver starts one policy server (``policies.serving.http_server``) per
served policy before the episodes, and every simulator worker reaches it as a ``RemotePolicy``
client: the model is loaded once, not once per worker, and with ``max_batch`` > 1 concurrent
workers' queries are stacked into one forward pass. Locally a server is a child process
(``python -m evaluation.backends.serving``); on Ray it is an actor (``ray_resources`` places it, e.g. on
the GPU node) and the workers are actors on the CPU nodes.

Which servers: one per *policy*, not per variant. A variant that only changes execution or
latency uses its base's server; a policy whose factory takes ``task`` gets one server per task,
any other one server for every task (built with the first task's seed, as the in-process run
builds it on that task). A factory that takes ``env`` reads the simulator and cannot be served.

Reproducibility: a server with ``max_batch: 1`` computes each query with the policy's own ``act``
on the worker's observation, with the same torch threads, so the episodes equal the in-process
run's bit for bit (tested, locally and on a two-node Ray cluster). Batched queries of several
workers are computed as one matrix product and may differ in the last bits (at most 5.5e-6 for
TinyVLA, ``tests/test_serving_batching.py``), which can change an episode. A policy that draws
random numbers at query time draws them from the server's generator, in the order queries arrive.

At the end the driver asks each server for its statistics (``GET /stats``: batch sizes, queue
wait, forward time) and writes them to ``run.json`` under ``serving``.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict

from evaluation.run.config import EvalConfig
from evaluation.run.plan import Endpoint, Endpoints, ServedPolicy
from policies.factories import factory_parameters, resolve_factory
from policies.specs import FactoryPolicySpec, underlying_spec
from vla_envs.errors import VlaEnvsError

STATS_TIMEOUT_S = 10.0


class ServingError(VlaEnvsError, RuntimeError):
    """A policy server of the run could not be planned or started."""


def _factory_parameters(config: EvalConfig, name: str) -> frozenset[str]:
    """The parameters of the factory the variant's policy is finally built by (none for other specs)."""
    spec = underlying_spec(config.policy_spec_of(name))
    return factory_parameters(resolve_factory(spec.factory)) if isinstance(spec, FactoryPolicySpec) else frozenset()


def plan_servers(config: EvalConfig) -> list[ServedPolicy]:
    """The servers a run with ``serving`` starts (a ``ServingError`` naming the variant when its
    policy cannot be served)."""
    served = config.served_variants()
    by_owner: dict[str, list[str]] = {}
    for name in served:
        by_owner.setdefault(config.policy_owner(name), []).append(name)
    plans = []
    for owner, names in by_owner.items():
        parameters = _factory_parameters(config, owner)
        if "env" in parameters:
            raise ServingError(f"serving variant {owner!r}: its policy factory takes `env` (it reads the simulator), "
                               "which a policy server does not have; expected it left out of 'serving.variants'")
        if "task" in parameters:
            plans += [ServedPolicy(owner, tuple(names), (task,)) for task in config.tasks]
        else:
            plans.append(ServedPolicy(owner, tuple(names), tuple(config.tasks)))
    return plans


def build_served_policy(config: EvalConfig, served: ServedPolicy):
    """The policy a server holds: built as the in-process run builds it on ``served.tasks[0]``."""
    from evaluation.run.policy_cache import PolicyCache

    return PolicyCache(config, served.tasks[0], env=None).build_local(served.variant)


# -- local child processes -------------------------------------------------------------------
def _server_args(config: EvalConfig, served: ServedPolicy) -> list[str]:
    serving = config.serving
    assert serving is not None
    return ["--variant", served.variant, "--variants", ",".join(served.variants), "--tasks", ",".join(served.tasks),
            "--host", serving.host, "--port", "0", "--max-batch", str(serving.max_batch),
            "--max-wait-ms", repr(serving.max_wait_ms),
            "--torch-threads", str(serving.torch_threads or config.torch_threads)]


def _record_servers(record: dict, endpoints: list[Endpoint], stats: list[dict | None]) -> None:
    """What run.json holds of each server: what it served, where, and its final ``GET /stats``."""
    record.update(servers=[{**asdict(e.served), "url": e.url, "stats": s} for e, s in zip(endpoints, stats)])


def _fetch_stats(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"{url}/stats", timeout=STATS_TIMEOUT_S) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None  # the server is gone: the run's episodes are recorded anyway


@contextmanager
def local_servers(config: EvalConfig, plans: list[ServedPolicy], record: dict | None = None) -> Iterator[Endpoints]:
    """Start the servers ``plans`` lists (``plan_servers``) as child processes, yield where they
    answer, and stop them; ``record`` (a dict) receives each server's URL and final statistics."""
    from policies.serving.launch import start_server_process

    serving = config.serving
    assert serving is not None
    processes = []
    endpoints = []
    try:
        for served in plans:
            try:
                proc, url = start_server_process(
                    _server_args(config, served), f"the policy server for {served.name}", module="evaluation.backends.serving",
                    stdin_text=config.model_dump_json(), timeout_s=serving.start_timeout_s, new_session=True)
            except RuntimeError as exc:
                raise ServingError(str(exc)) from None
            processes.append(proc)
            endpoints.append(Endpoint(served, url))
        yield Endpoints(tuple(endpoints))
    finally:
        if record is not None:
            _record_servers(record, endpoints, [_fetch_stats(e.url) for e in endpoints])
        for proc in processes:
            proc.terminate()
        for proc in processes:
            try:
                proc.wait(timeout=10)
            except Exception:  # noqa: BLE001 - a server that ignores SIGTERM is killed
                proc.kill()
                proc.wait()


# -- Ray actors --------------------------------------------------------------------------------
class _ServerActor:
    """A policy server inside a Ray actor, placed by ``serving.ray_resources``."""

    def __init__(self, config_json: str, served: ServedPolicy):
        from policies.serving.http_server import PolicyServer
        from policies.specs import set_threads

        config = EvalConfig.model_validate_json(config_json)
        serving = config.serving
        set_threads(serving.torch_threads or config.torch_threads)
        policy = build_served_policy(config, served)
        self.server = PolicyServer(policy, serving.host, 0, max_batch=serving.max_batch,
                                   max_wait_ms=serving.max_wait_ms).start()

    def url(self) -> str:
        import ray

        host = self.server.host
        if host in ("0.0.0.0", "::", ""):  # bound to every interface: the workers use this node's address
            host = ray.util.get_node_ip_address()
        return f"http://{host}:{self.server.port}"

    def stats(self) -> dict:
        return self.server.stats_snapshot()


@contextmanager
def ray_servers(config: EvalConfig, plans: list[ServedPolicy], record: dict | None = None) -> Iterator[Endpoints]:
    """The servers ``plans`` lists as Ray actors (Ray already initialised by the caller)."""
    import ray

    serving = config.serving
    assert serving is not None
    resources = dict(serving.ray_resources)
    options = {"num_cpus": resources.pop("CPU", 1), "num_gpus": resources.pop("GPU", 0)}
    if resources:
        options["resources"] = resources
    actor_class = ray.remote(**options)(_ServerActor)
    config_json = config.model_dump_json()
    actors, endpoints = [], []
    try:
        for served in plans:
            actor = actor_class.remote(config_json, served)
            actors.append(actor)
            try:
                url = ray.get(actor.url.remote(), timeout=serving.start_timeout_s)
            except Exception as exc:
                raise ServingError(f"the policy server for {served.name} did not start on Ray: {exc}") from exc
            endpoints.append(Endpoint(served, url))
        yield Endpoints(tuple(endpoints))
    finally:
        if record is not None:
            stats = []
            for actor, endpoint in zip(actors, endpoints):
                try:
                    stats.append(ray.get(actor.stats.remote(), timeout=STATS_TIMEOUT_S))
                except Exception:  # noqa: BLE001 - the actor is gone: the episodes are recorded anyway
                    stats.append(None)
            _record_servers(record, endpoints, stats)
        for actor in actors:
            ray.kill(actor)


# -- the server process --------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    """``python -m evaluation.backends.serving --variant V --variants A,B --tasks T1,T2 ...`` with the
    evaluation config's JSON on stdin: build the variant's policy and serve it until stopped."""
    parser = argparse.ArgumentParser(description="Serve one variant's policy of an evaluation config (read from stdin).")
    parser.add_argument("--variant", required=True)
    parser.add_argument("--variants", required=True, help="comma-separated: the variants this server answers for")
    parser.add_argument("--tasks", required=True, help="comma-separated; the policy is built as for the first")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-batch", type=int, default=1)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--torch-threads", type=int, default=1)
    args = parser.parse_args(argv)
    import vla_envs  # noqa: F401  (first: sets MUJOCO_GL before anything imports mujoco)
    from policies.serving.launch import serve
    from policies.specs import set_threads

    config = EvalConfig.model_validate_json(sys.stdin.read())
    set_threads(args.torch_threads)
    served = ServedPolicy(args.variant, tuple(args.variants.split(",")), tuple(args.tasks.split(",")))
    serve(build_served_policy(config, served), "http", args.host, args.port, name=served.name,
          max_batch=args.max_batch, max_wait_ms=args.max_wait_ms, max_sessions=1024)


if __name__ == "__main__":
    main()
