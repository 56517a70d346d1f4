"""Serve any ``Policy`` over HTTP, and use a served policy as a ``Policy``.

Real VLAs run on a GPU server while simulations run elsewhere. The server binds loopback
(127.0.0.1) by default; bind another address only on a network you trust (there is no auth).

Protocol (bodies are msgpack; numpy arrays travel as ``{"__ndarray__": true, "dtype", "shape",
"data": raw bytes}``, so arrays round-trip bit for bit):

=========  =======================================  =============================================
GET /info  -                                        ``{"action_dim", "chunk_size", "policy"}``
POST /reset ``{"instruction": str}``                ``{"ok": true}``
POST /act  the observation dict                     ``{"action": (H, action_dim) float32 array}``
=========  =======================================  =============================================

A bad request (not msgpack, wrong observation keys or shapes, a policy error) gets status 400
and ``{"error": "..."}``; the server keeps serving.

    python -m policies.remote serve --policy my_module:make_policy --port 8000
"""

from __future__ import annotations

import argparse
import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

import msgpack
import numpy as np

from policies.base import Policy, check_chunk

DEFAULT_HOST = "127.0.0.1"


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        return {"__ndarray__": True, "dtype": array.dtype.str, "shape": list(array.shape), "data": array.tobytes()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _decode(value: dict) -> Any:
    if value.get("__ndarray__"):
        dtype = np.dtype(value["dtype"])
        if dtype.hasobject:
            raise ValueError("object arrays are not accepted")
        return np.frombuffer(value["data"], dtype=dtype).reshape(value["shape"])
    return value


def pack(value: Any) -> bytes:
    return msgpack.packb(value, default=_encode, use_bin_type=True)


def unpack(payload: bytes) -> Any:
    return msgpack.unpackb(payload, object_hook=_decode, raw=False)


class PolicyServer:
    """An HTTP server around one policy. Requests are handled one at a time (a lock), since a
    policy keeps per-episode state."""

    def __init__(self, policy: Policy, host: str = DEFAULT_HOST, port: int = 0, observation_shapes=None):
        self.policy = policy
        self.observation_shapes = observation_shapes or getattr(policy, "observation_shapes", None)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: one connection per client

            def log_message(self, format, *args):  # noqa: A002 - quiet by default
                pass

            def _reply(self, status: int, body: dict) -> None:
                payload = pack(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/msgpack")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):  # noqa: N802
                if self.path != "/info":
                    return self._reply(404, {"error": f"unknown path {self.path}: expected /info"})
                p = server.policy
                self._reply(200, {"action_dim": p.action_dim, "chunk_size": p.chunk_size, "policy": type(p).__name__})

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                try:
                    request = unpack(body)
                except Exception as exc:  # noqa: BLE001 - any decoding failure is the client's
                    return self._reply(400, {"error": f"request body is not valid msgpack: {exc}"})
                try:
                    if self.path == "/reset":
                        instruction = request.get("instruction", "") if isinstance(request, dict) else None
                        if not isinstance(instruction, str):
                            raise ValueError("reset expects {'instruction': str}")
                        with server._lock:
                            server.policy.reset(instruction)
                        return self._reply(200, {"ok": True})
                    if self.path == "/act":
                        server._check_observation(request)
                        with server._lock:
                            chunk = check_chunk(server.policy.act(request), server.policy.action_dim)
                        return self._reply(200, {"action": chunk})
                    return self._reply(404, {"error": f"unknown path {self.path}: expected /reset or /act"})
                except Exception as exc:  # noqa: BLE001 - reported to the client, server keeps serving
                    return self._reply(400, {"error": f"{type(exc).__name__}: {exc}"})

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.host, self.port = self.httpd.server_address[:2]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _check_observation(self, obs) -> None:
        if not isinstance(obs, dict):
            raise ValueError(f"observation must be a dict, got {type(obs).__name__}")
        for key, shape in (self.observation_shapes or {}).items():
            if key not in obs:
                raise ValueError(f"observation is missing {key!r}: expected keys {sorted(self.observation_shapes)}")
            got = np.shape(obs[key])
            if tuple(got) != tuple(shape):
                raise ValueError(f"observation[{key!r}] has shape {tuple(got)}, expected {tuple(shape)}")

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def start(self) -> "PolicyServer":
        """Serve from a daemon thread (for in-process use)."""
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class RemoteError(RuntimeError):
    """The policy server answered with an error."""


class RemotePolicy(Policy):
    """A ``Policy`` whose ``act`` runs on a ``PolicyServer``."""

    def __init__(self, url: str, timeout_s: float = 30.0):
        parsed = urlparse(url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"url={url!r}: expected http://host:port")
        self._connection = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=timeout_s)
        info = self._request("GET", "/info")
        self.action_dim = int(info["action_dim"])
        self.chunk_size = int(info["chunk_size"])
        self.remote_policy = info["policy"]

    def _request(self, method: str, path: str, body: Any = None) -> dict:
        payload = pack(body) if body is not None else None
        headers = {"Content-Type": "application/msgpack"} if payload is not None else {}
        self._connection.request(method, path, body=payload, headers=headers)
        response = self._connection.getresponse()
        reply = unpack(response.read())
        if response.status != 200:
            raise RemoteError(f"{method} {path} -> {response.status}: {reply.get('error')}")
        return reply

    def reset(self, instruction: str = "") -> None:
        super().reset(instruction)
        self._request("POST", "/reset", {"instruction": instruction})

    def act(self, obs) -> np.ndarray:
        return np.array(self._request("POST", "/act", dict(obs))["action"])

    def close(self) -> None:
        self._connection.close()


def load_policy(spec: str) -> Policy:
    """``module:factory`` -> ``factory()``."""
    from policies.factories import resolve_factory

    try:
        return resolve_factory(spec)()
    except ValueError as exc:
        raise ValueError(f"--policy {exc}") from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a policy over HTTP (msgpack).")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("--policy", required=True, help="module:factory returning a Policy")
    serve.add_argument("--host", default=DEFAULT_HOST, help="bind address (default loopback)")
    serve.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    args = parser.parse_args(argv)
    server = PolicyServer(load_policy(args.policy), args.host, args.port)
    print(f"serving {type(server.policy).__name__} at {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()


if __name__ == "__main__":
    main()
