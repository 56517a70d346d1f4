"""This suite's HTTP policy protocol, with a session per client episode.

Bodies are msgpack (``policies.serving.wire``; arrays round-trip bit for bit):

============  =============================================  ==========================================
GET /info     -                                              ``{"action_dim", "chunk_size", "policy",
                                                             "protocol", "max_sessions", "sessions"}``
POST /reset   ``{"instruction": str, "session": id | null}``  ``{"session": id}``: a new session, or the
                                                             given one reset (while it is alive)
POST /act     ``{"session": id, "observation": dict}``       ``{"action": (H, action_dim) float32}``
POST /close   ``{"session": id}``                            ``{"ok": true}``
============  =============================================  ==========================================

Errors answer ``{"error": "..."}`` with a status that says whose fault it is: 400 a malformed
body, header or observation, or an error of the policy on that input; 404 an unknown path or an
unknown/expired session; 411 no ``Content-Length``; 413 a body over ``max_body_bytes`` (not
read); 503 every session slot in use. The server keeps serving after any of them.
"""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from policies.base import Policy, check_chunk
from policies.serving.sessions import SessionError, SessionPool, TooManySessions
from policies.serving.wire import WireError, pack, unpack

DEFAULT_HOST = "127.0.0.1"
PROTOCOL = "vla-envs-http/2"
DEFAULT_MAX_BODY_BYTES = 64 * 2**20  # two 1024 px RGB images and a state are ~6 MB
_DIGITS = re.compile(r"[0-9]{1,20}")


class RequestError(Exception):
    """A request the server refuses, with its HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def check_observation(obs, shapes: dict[str, tuple[int, ...]] | None) -> None:
    """``obs`` is a dict holding every key of ``shapes`` with that shape (RequestError 400 otherwise)."""
    if not isinstance(obs, dict):
        raise RequestError(400, f"observation must be a dict, got {type(obs).__name__}")
    for key, shape in (shapes or {}).items():
        if key not in obs:
            raise RequestError(400, f"observation is missing {key!r}: expected keys {sorted(shapes)}")
        got = np.shape(obs[key])
        if tuple(got) != tuple(shape):
            raise RequestError(400, f"observation[{key!r}] has shape {tuple(got)}, expected {tuple(shape)}")


class PolicyServer:
    """An HTTP server around one policy, a ``SessionPool`` of forks of it for its clients."""

    def __init__(self, policy: Policy, host: str = DEFAULT_HOST, port: int = 0, observation_shapes=None,
                 max_sessions: int = 64, idle_timeout_s: float = 600.0, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES):
        self.policy = policy
        self.observation_shapes = observation_shapes or getattr(policy, "observation_shapes", None)
        self.sessions = SessionPool(policy, max_sessions, idle_timeout_s)
        self.max_body_bytes = int(max_body_bytes)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: one connection per client
            # headers and body leave in two writes: with Nagle's algorithm the body would wait for
            # the client's delayed ACK (~40 ms a request)
            disable_nagle_algorithm = True

            def log_message(self, format, *args):  # noqa: A002 - quiet by default
                pass

            def _reply(self, status: int, body: dict) -> None:
                payload = pack(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/msgpack")
                self.send_header("Content-Length", str(len(payload)))
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):  # noqa: N802
                if self.path != "/info":
                    return self._reply(404, {"error": f"unknown path {self.path}: expected /info"})
                p = server.policy
                self._reply(200, {"action_dim": p.action_dim, "chunk_size": p.chunk_size, "policy": type(p).__name__,
                                  "protocol": PROTOCOL, "max_sessions": server.sessions.max_sessions,
                                  "sessions": len(server.sessions)})

            def _body(self) -> bytes:
                """The request body, after strict checks of its length (the body is not read when
                they fail, and the connection is closed after the answer)."""
                lengths = self.headers.get_all("Content-Length") or []
                if self.headers.get("Transfer-Encoding") is not None or not lengths:
                    self.close_connection = True
                    raise RequestError(411, "a Content-Length header is required (chunked bodies are not accepted)")
                if len(lengths) > 1 or not _DIGITS.fullmatch(lengths[0].strip()):
                    self.close_connection = True
                    raise RequestError(400, f"Content-Length {', '.join(lengths)!r}: expected one non-negative integer")
                length = int(lengths[0])
                if length > server.max_body_bytes:
                    self.close_connection = True
                    raise RequestError(413, f"a body of {length} bytes: expected at most {server.max_body_bytes}")
                body = self.rfile.read(length)
                if len(body) != length:
                    self.close_connection = True
                    raise RequestError(400, f"the body ended after {len(body)} of {length} bytes")
                return body

            def do_POST(self):  # noqa: N802
                try:
                    body = self._body()
                    if self.path not in ("/reset", "/act", "/close"):
                        raise RequestError(404, f"unknown path {self.path}: expected /reset, /act or /close")
                    try:
                        request = unpack(body)
                    except WireError as exc:
                        raise RequestError(400, f"request body is {exc}") from None
                    if not isinstance(request, dict):
                        raise RequestError(400, f"request body is a {type(request).__name__}, expected a map")
                    reply = getattr(server, "_" + self.path[1:])(request)
                except RequestError as exc:
                    return self._reply(exc.status, {"error": str(exc)})
                except SessionError as exc:
                    return self._reply(404, {"error": str(exc)})
                except TooManySessions as exc:
                    return self._reply(503, {"error": str(exc)})
                except Exception as exc:  # noqa: BLE001 - the policy failed on this input; keep serving
                    return self._reply(400, {"error": f"{type(exc).__name__}: {exc}"})
                self._reply(200, reply)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.host, self.port = self.httpd.server_address[:2]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- endpoints ---------------------------------------------------------------------------
    @staticmethod
    def _field(request: dict, name: str, kind: type, optional: bool = False):
        value = request.get(name)
        if value is None and optional:
            return None
        if not isinstance(value, kind):
            raise RequestError(400, f"field {name!r} = {value!r}: expected a {kind.__name__}")
        return value

    def _reset(self, request: dict) -> dict:
        instruction = self._field(request, "instruction", str)
        session = self.sessions.open(instruction, self._field(request, "session", str, optional=True))
        return {"session": session.id}

    def _act(self, request: dict) -> dict:
        session = self.sessions.get(self._field(request, "session", str))
        obs = request.get("observation")
        check_observation(obs, self.observation_shapes)
        with session.lock:
            chunk = check_chunk(session.policy.act(obs), self.policy.action_dim, type(self.policy).__name__)
        return {"action": chunk}

    def _close(self, request: dict) -> dict:
        self.sessions.close(self._field(request, "session", str))
        return {"ok": True}

    # -- running -------------------------------------------------------------------------------
    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def start(self) -> PolicyServer:
        """Serve from a daemon thread (for in-process use)."""
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
