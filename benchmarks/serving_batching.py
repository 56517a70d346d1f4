"""Dynamic batching in the HTTP policy server: throughput of N concurrent clients, TinyVLA served
unbatched (``--max-batch 1``) vs batched (``--max-batch N``), side by side in one run.

Both servers run in their own process on loopback with ``--torch-threads`` each (1 by default;
unbatched, the requests' threads still run forward passes side by side, as torch releases the
GIL, while the batch worker runs one batch at a time); the clients are
threads of this process, each a ``RemotePolicy`` with its own instruction and its own
observations. Each round sends every client's ``requests`` requests to one server, then to the
other (alternating, so machine noise hits both alike); throughput is requests per second of
wall time, the median over rounds. The batched answers are compared with the unbatched
in-process ``act`` on the same inputs (max abs difference; not zero: a batch's matmuls have
other shapes, so float32 rounding differs in the last bits).

    python benchmarks/serving_batching.py [--clients 16] [--requests 20] [--rounds 3] [--max-wait-ms 5] [--torch-threads 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import threading
import time
import urllib.request

import numpy as np

from policies.serving.launch import start_server_process

INSTRUCTIONS = ("lift the red cube", "push the green cube", "open the door", "close the drawer", "pick up the can")


def _serve(max_batch: int, max_wait_ms: float, torch_threads: int) -> tuple[subprocess.Popen, str]:
    return start_server_process(["--policy", "policies.tinyvla:load_reference", "--port", "0", "--torch-threads",
                                 str(torch_threads), "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms)],
                                f"the server (max_batch={max_batch})")


def _observations(clients: int, requests: int) -> list[list[dict]]:
    rng = np.random.default_rng(0)
    return [[{"image": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
              "wrist_image": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
              "proprio": rng.normal(size=50).astype(np.float32)} for _ in range(requests)] for _ in range(clients)]


def _round(url: str, observations: list[list[dict]]) -> tuple[float, list[list[np.ndarray]]]:
    """Every client sends its requests at once; returns (requests per second, the answers)."""
    from policies.serving.http_client import RemotePolicy

    clients = len(observations)
    answers: list[list[np.ndarray]] = [[] for _ in range(clients)]
    errors: list[str] = []
    remotes = [RemotePolicy(url) for _ in range(clients)]
    for index, remote in enumerate(remotes):
        remote.reset(INSTRUCTIONS[index % len(INSTRUCTIONS)])  # sessions open before the clock starts
    start = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        start.wait()
        try:
            answers[index] = [remotes[index].act(obs) for obs in observations[index]]
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    for remote in remotes:
        remote.close()
    if errors:
        raise RuntimeError(f"{len(errors)} clients failed, the first: {errors[0]}")
    return sum(map(len, observations)) / seconds, answers


def _stats(url: str) -> dict:
    with urllib.request.urlopen(url + "/stats", timeout=10) as response:
        return json.loads(response.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=20, help="per client per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--torch-threads", type=int, default=1, help="in each server")
    args = parser.parse_args()

    import torch

    from policies.tinyvla import load_reference

    torch.set_num_threads(1)
    observations = _observations(args.clients, args.requests)
    reference = load_reference()
    expected = []
    for index, client_obs in enumerate(observations):
        reference.reset(INSTRUCTIONS[index % len(INSTRUCTIONS)])
        expected.append([reference.act(obs) for obs in client_obs])

    servers = {"unbatched": _serve(1, args.max_wait_ms, args.torch_threads),
               "batched": _serve(args.clients, args.max_wait_ms, args.torch_threads)}
    try:
        for _, url in servers.values():
            _round(url, [client_obs[:2] for client_obs in observations])  # warm-up (connections, first calls)
        throughput: dict[str, list[float]] = {name: [] for name in servers}
        max_diff = dict.fromkeys(servers, 0.0)
        for _ in range(args.rounds):
            for name, (_, url) in servers.items():
                rate, answers = _round(url, observations)
                throughput[name].append(rate)
                for got, want in zip(answers, expected):
                    for a, e in zip(got, want):
                        max_diff[name] = max(max_diff[name], float(np.abs(a - e).max()))
        stats = {name: _stats(url) for name, (_, url) in servers.items()}
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=10)

    print(f"TinyVLA served over HTTP on loopback, {args.clients} concurrent clients x {args.requests} requests, "
          f"{args.rounds} rounds (median), {args.torch_threads} torch thread(s) per server, "
          f"max_wait_ms={args.max_wait_ms:g}")
    for name in servers:
        s = stats[name]
        print(f"  {name:9s} (max_batch {s['max_batch']:2d})  {statistics.median(throughput[name]):7.1f} requests/s   "
              f"mean batch {s['mean_batch_size']:5.2f}   forward {s['forward_ms']['mean']:6.2f} ms   "
              f"queue wait mean {s['queue_wait_ms']['mean']:6.2f} ms p90 {s['queue_wait_ms']['p90']:6.2f} ms   "
              f"max |answer - in-process act| {max_diff[name]:.2g}")
    ratio = statistics.median(throughput["batched"]) / statistics.median(throughput["unbatched"])
    print(f"  throughput ratio batched / unbatched: {ratio:.2f}x   "
          f"batch sizes (batched, incl. warm-up): {stats['batched']['batch_sizes']}")


if __name__ == "__main__":
    main()
