"""Serve a policy from the command line, and the served-policy classes under their old import path.

    python -m policies.remote serve --policy my_module:make_policy [--protocol http|openpi] [--port 8000]
        [--max-batch 16 --max-wait-ms 5]   # http: dynamic batching of concurrent sessions

``--protocol http`` (the default) is this suite's protocol (``policies.serving.http_server``:
``RemotePolicy`` is its client); ``--protocol openpi`` is openpi's websocket protocol
(``policies.serving.openpi_server``: ``openpi_client.WebsocketClientPolicy`` or ``OpenPIPolicy``
are its clients). Servers bind loopback by default and keep one session per client episode.
"""

from __future__ import annotations

import argparse

from policies.base import Policy
from policies.serving.http_client import RemoteError, RemotePolicy
from policies.serving.http_server import DEFAULT_HOST, PolicyServer
from policies.serving.wire import pack, unpack

__all__ = ["DEFAULT_HOST", "PolicyServer", "RemoteError", "RemotePolicy", "load_policy", "main", "pack", "unpack"]


def load_policy(spec: str) -> Policy:
    """``module:factory`` -> ``factory()``."""
    from policies.factories import resolve_factory

    try:
        policy = resolve_factory(spec)()
    except ValueError as exc:
        raise ValueError(f"--policy {exc}") from None
    if not isinstance(policy, Policy):
        raise ValueError(f"--policy {spec}: returned a {type(policy).__name__}, expected a policies.base.Policy")
    return policy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a policy (this suite's HTTP protocol or openpi's websocket one).")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("--policy", required=True, help="module:factory returning a Policy")
    serve.add_argument("--protocol", choices=("http", "openpi"), default="http")
    serve.add_argument("--host", default=DEFAULT_HOST, help="bind address (default loopback)")
    serve.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    serve.add_argument("--max-sessions", type=int, default=64, help="concurrent client episodes")
    serve.add_argument("--idle-timeout-s", type=float, default=600.0, help="an idle HTTP session expires, an idle openpi connection is closed, after this")
    serve.add_argument("--read-timeout-s", type=float, default=30.0,
                       help="http: a client that sends nothing for this long mid-request or between requests is disconnected")
    serve.add_argument("--max-connections", type=int, default=256, help="http: open connections; more are answered 503")
    serve.add_argument("--max-batch", type=int, default=1,
                       help="http: /act requests of up to this many sessions run as one forward pass, for a policy "
                            "that declares batched inference (Policy.batchable); 1 (default): unbatched")
    serve.add_argument("--max-wait-ms", type=float, default=5.0,
                       help="http: how long the oldest waiting /act request waits for others to join its batch")
    serve.add_argument("--prompt-key", default="prompt", help="openpi: the observation entry holding the instruction")
    serve.add_argument("--traceback-to-client", action="store_true",
                       help="openpi: answer a failed request with the server's traceback, as openpi does (default: "
                            "one line; the traceback goes to the server's log either way)")
    serve.add_argument("--torch-threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.max_batch < 1 or not args.max_wait_ms >= 0:
        parser.error(f"--max-batch {args.max_batch} --max-wait-ms {args.max_wait_ms}: expected >= 1 and >= 0")
    if args.protocol == "openpi" and args.max_batch != 1:
        parser.error("--max-batch: dynamic batching is served over --protocol http only")
    if args.torch_threads is not None:
        import torch

        torch.set_num_threads(args.torch_threads)
    from policies.serving.launch import serve

    serve(load_policy(args.policy), args.protocol, args.host, args.port, max_sessions=args.max_sessions,
          idle_timeout_s=args.idle_timeout_s, prompt_key=args.prompt_key, read_timeout_s=args.read_timeout_s,
          max_connections=args.max_connections, traceback_to_client=args.traceback_to_client,
          max_batch=args.max_batch, max_wait_ms=args.max_wait_ms)


if __name__ == "__main__":
    main()
