"""Round-trip overhead of a served policy: TinyVLA in process vs over this suite's HTTP protocol
vs over openpi's websocket protocol (both servers in another process on loopback).

Each round times ``calls`` queries of each path on the same observation, the paths interleaved
so machine noise hits them alike; the ratios are of medians over rounds (served / in-process).

    python benchmarks/serving_overhead.py [--calls 50] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

import numpy as np

from policies.serving.launch import start_server_process


def _serve(protocol: str) -> tuple[subprocess.Popen, str]:
    return start_server_process(["--protocol", protocol, "--policy", "policies.tinyvla:load_reference", "--port", "0",
                                 "--torch-threads", "1"], f"the {protocol} server")


def _time(policy, obs, calls: int) -> float:
    """Median seconds per call over ``calls`` calls."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        policy.act(obs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import torch

    from policies.serving.http_client import RemotePolicy
    from policies.serving.openpi_client import OpenPIPolicy
    from policies.tinyvla import load_reference

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    obs = {"image": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
           "wrist_image": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
           "proprio": rng.normal(size=50).astype(np.float32)}
    servers = [_serve("http"), _serve("openpi")]
    try:
        local = load_reference()
        paths = {"in-process": local, "http": RemotePolicy(servers[0][1]), "openpi": OpenPIPolicy(servers[1][1])}
        for policy in paths.values():
            policy.reset("lift the red cube")
            _time(policy, obs, 5)  # warm-up
        medians = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, policy in paths.items():
                medians[name].append(_time(policy, obs, args.calls))
        base = statistics.median(medians["in-process"])
        print(f"TinyVLA, one query, {args.rounds} rounds x {args.calls} calls (torch threads: 1 in every process)")
        for name, values in medians.items():
            ms = statistics.median(values) * 1e3
            print(f"  {name:11s} {ms:7.3f} ms per call   ratio vs in-process {statistics.median(values) / base:5.2f}x   "
                  f"overhead {ms - base * 1e3:+.3f} ms")
    finally:
        for proc, _ in servers:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
