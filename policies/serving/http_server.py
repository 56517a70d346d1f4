"""This suite's HTTP policy protocol, with a session per client episode.

Bodies are msgpack (``policies.serving.wire``; arrays round-trip bit for bit):

============  =============================================  ==========================================
GET /healthz  -                                              ``OK\n`` (text/plain, as openpi's servers):
                                                             the server is up and answering
GET /info     -                                              ``{"action_dim", "chunk_size", "policy",
                                                             "protocol", "max_sessions", "sessions",
                                                             "max_batch"}``
GET /stats    -                                              JSON (not msgpack: for curl and dashboards):
                                                             forward passes, batch sizes, queue wait and
                                                             forward time (``batching.ServingStats``)
POST /reset   ``{"instruction": str, "session": id | null}``  ``{"session": id}``: a new session, or the
                                                             given one reset (while it is alive)
POST /act     ``{"session": id, "observation": dict}``       ``{"action": (H, action_dim) float32}``
POST /close   ``{"session": id}``                            ``{"ok": true}``
============  =============================================  ==========================================

Errors answer ``{"error": "..."}`` with a status that says whose fault it is: 400 a malformed
body, header or observation, or an error of the policy on that input; 404 an unknown path or an
unknown/expired session; 408 a body that stopped arriving; 411 no ``Content-Length``; 413 a body
over ``max_body_bytes`` (not read); 503 every session slot in use, every connection slot in use
(``max_connections``), or no room for the body among the bodies being read (``max_pending_bytes``;
not read). The server keeps serving after any of them. Error messages name what was wrong and
never carry more than a short excerpt of what the client sent.

Logging (Python logging, logger ``policies.serving.http_server``): one DEBUG line per answered
request (client, method, path, status, milliseconds; DEBUG because ``/act`` runs at the control
rate of every client); a refused request (4xx, 503) one WARNING line with its status and message;
an error of the policy, or of the server itself, an ERROR with its traceback, which stays in the
log (the client gets the one-line ``{"error": "<Type>: <message>"}``); a client that hangs up
mid-request one INFO line.

Dynamic batching (``max_batch > 1``, ``policies.serving.batching``): ``/act`` requests of
different sessions that arrive within ``max_wait_ms`` of each other run as one
``policy.act_batch`` forward pass of up to ``max_batch`` sessions, each with its own
instruction and episode state (its fork), when the session's policy declares
``Policy.batchable()``; otherwise, and with ``max_batch=1`` (the default), each request runs
alone in its connection's thread. An error stays with its request: a batch that raises is run
again one request at a time.

What a client can hold is bounded: ``max_connections`` connections, each closed after
``read_timeout_s`` without a byte from the client (between requests too: ``RemotePolicy``
reconnects), and ``max_pending_bytes`` of request bodies being received at once.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from policies.base import Policy, check_chunk
from policies.error_base import VlaEnvsError
from policies.serving.batching import Batcher, BatcherClosed, ServingStats
from policies.serving.sessions import SessionError, SessionPool, TooManySessions
from policies.serving.wire import WireError, clip, describe, pack, unpack

DEFAULT_HOST = "127.0.0.1"
PROTOCOL = "vla-envs-http/2"
DEFAULT_MAX_BODY_BYTES = 64 * 2**20  # two 1024 px RGB images and a state are ~6 MB
DEFAULT_READ_TIMEOUT_S = 30.0
DEFAULT_MAX_CONNECTIONS = 256  # a RemotePolicy holds one; the default max_sessions is 64
DEFAULT_MAX_WAIT_MS = 5.0  # a batch waits at most this long for more requests (a few % of a 100 ms control step)
PENDING_BODIES = 4  # max_pending_bytes defaults to this many bodies of max_body_bytes
_DIGITS = re.compile(r"[0-9]{1,20}")
_SHOWN_PATH_CHARS = 80
log = logging.getLogger(__name__)


class _HungUp(Exception):
    """The client closed its connection mid-request: there is no one to answer."""


class RequestError(VlaEnvsError):
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


class _BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` of them; a client that hangs up is
    one log line, not a traceback."""

    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 drops the SYNs of a burst of clients (a 1 s retry each)

    def __init__(self, address, handler, max_connections: int):
        self.max_connections = max_connections
        self.connections = 0
        self._count_lock = threading.Lock()
        super().__init__(address, handler)

    def verify_request(self, request, client_address) -> bool:
        with self._count_lock:
            if self.connections < self.max_connections:
                self.connections += 1
                return True
        log.warning("client %s refused: all %d connection slots are in use (503)", _client(client_address),
                    self.max_connections)
        try:  # a courtesy answer; never wait on this client from the accepting thread
            request.setblocking(False)
            request.send(_BUSY)
        except OSError:
            pass
        return False  # the caller closes it

    def _release(self) -> None:
        with self._count_lock:
            self.connections -= 1

    def process_request(self, request, client_address) -> None:
        try:
            super().process_request(request, client_address)
        except BaseException:  # no thread started: it will not release its slot
            self._release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def handle_error(self, request, client_address) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            log.info("client %s hung up mid-request (%s)", client_address, type(error).__name__)
            return
        # socketserver would print the traceback to stderr; it belongs in the log (the client's
        # connection is closed without it)
        log.error("error serving client %s", _client(client_address), exc_info=True)


def _busy_reply() -> bytes:
    body = pack({"error": "every connection slot is in use: try again later, or start the server with a larger "
                          "max_connections"})
    return (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/msgpack\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)


_BUSY = _busy_reply()


def _client(address) -> str:
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) and len(address) >= 2 else str(address)


def _shown(text: str | None) -> str:
    """A client's request line text for the log: control characters escaped (one request, one
    line) and clipped."""
    return clip((text or "-").encode("unicode_escape").decode("ascii"), _SHOWN_PATH_CHARS)


class PolicyServer:
    """An HTTP server around one policy, a ``SessionPool`` of forks of it for its clients.

    ``read_timeout_s``: a connection is closed after this long without a byte from its client;
    ``max_connections``: open connections (more are answered 503 and closed);
    ``max_pending_bytes``: the sum of the ``Content-Length`` of the bodies being received at
    once (a body that does not fit is answered 503, unread; default ``4 * max_body_bytes``);
    ``max_batch``: the most ``/act`` requests of different sessions run as one forward pass (1:
    unbatched); ``max_wait_ms``: how long the oldest waiting request waits for others to join.
    """

    def __init__(self, policy: Policy, host: str = DEFAULT_HOST, port: int = 0, observation_shapes=None,
                 max_sessions: int = 64, idle_timeout_s: float = 600.0, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 read_timeout_s: float = DEFAULT_READ_TIMEOUT_S, max_connections: int = DEFAULT_MAX_CONNECTIONS,
                 max_pending_bytes: int | None = None, max_batch: int = 1,
                 max_wait_ms: float = DEFAULT_MAX_WAIT_MS):
        self.policy = policy
        self.observation_shapes = observation_shapes or policy.observation_shapes
        self.sessions = SessionPool(policy, max_sessions, idle_timeout_s)
        self.max_body_bytes = int(max_body_bytes)
        self.max_pending_bytes = int(max_pending_bytes if max_pending_bytes is not None
                                     else PENDING_BODIES * self.max_body_bytes)
        if self.max_pending_bytes < self.max_body_bytes:
            raise ValueError(f"max_pending_bytes={self.max_pending_bytes}: expected >= max_body_bytes "
                             f"({self.max_body_bytes}), or no body of the largest size could ever be read")
        if not read_timeout_s > 0:
            raise ValueError(f"read_timeout_s={read_timeout_s}: expected > 0")
        if max_connections < 1:
            raise ValueError(f"max_connections={max_connections}: expected >= 1")
        self.read_timeout_s = float(read_timeout_s)
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch={max_batch!r}: expected an integer >= 1 (1: unbatched)")
        if not max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms={max_wait_ms}: expected >= 0")
        self.max_batch = max_batch
        self.stats = ServingStats(max_batch, float(max_wait_ms))
        self._batcher: Batcher | None = None  # started last: nothing to stop if the port cannot be bound
        self._pending = 0
        self._pending_lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: one connection per client
            timeout = server.read_timeout_s  # per read: headers, body and the wait between requests
            # headers and body leave in two writes: with Nagle's algorithm the body would wait for
            # the client's delayed ACK (~40 ms a request)
            disable_nagle_algorithm = True

            _started: float | None = None  # when this request's line arrived (not the keep-alive wait)

            def log_message(self, format, *args):  # noqa: A002 - replaced by log_request and the lines below
                pass

            def log_error(self, format, *args):  # noqa: A002 - http.server's: a connection idle past read_timeout_s
                log.info("client %s: " + format, _client(self.client_address), *args)

            def handle_one_request(self) -> None:
                self._started = None
                super().handle_one_request()

            def parse_request(self) -> bool:
                self._started = time.perf_counter()
                return super().parse_request()

            def log_request(self, code="-", size="-") -> None:
                """The request's line (http.server calls this once per answer, from send_response)."""
                if log.isEnabledFor(logging.DEBUG):
                    took = "" if self._started is None else f" {1e3 * (time.perf_counter() - self._started):.1f} ms"
                    log.debug("%s %s%s", self._request_line(), int(code) if str(code).isdigit() else code, took)

            def _request_line(self) -> str:
                """``client METHOD path`` for the log (http.server sets no path on a bad request line)."""
                return (f"{_client(self.client_address)} {_shown(getattr(self, 'command', None))} "
                        f"{_shown(getattr(self, 'path', None))}")

            def _refused(self, status: int, message: str) -> None:
                log.warning("%s -> %d: %s", self._request_line(), status, message)
                self._reply(status, {"error": message})

            def _reply(self, status: int, body: dict) -> None:
                payload = pack(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/msgpack")
                self.send_header("Content-Length", str(len(payload)))
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(payload)

            def send_error(self, code, message=None, explain=None):
                """http.server's own refusals (a bad request line, too many headers...), as msgpack
                and bounded: its message can quote the request line."""
                self.close_connection = True
                self._refused(code, clip(message or self.responses.get(code, ("",))[0], 200))

            def _ok(self, payload: bytes, content_type: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):  # noqa: N802
                if self.path == "/healthz":  # openpi's health check path: plain text, for probes and curl
                    return self._ok(b"OK\n", "text/plain; charset=utf-8")
                if self.path == "/stats":
                    return self._ok(json.dumps(server.stats_snapshot()).encode(), "application/json")
                if self.path != "/info":
                    return self._refused(404, f"unknown path {clip(self.path, _SHOWN_PATH_CHARS)!r}: "
                                              "expected /healthz or /info or /stats")
                p = server.policy
                self._reply(200, {"action_dim": p.action_dim, "chunk_size": p.chunk_size, "policy": type(p).__name__,
                                  "protocol": PROTOCOL, "max_sessions": server.sessions.max_sessions,
                                  "sessions": len(server.sessions), "max_batch": server.max_batch,
                                  # a compressed policy's own open-loop steps (compression's execution)
                                  "execute_steps": p.execute_steps})

            def _body(self) -> bytes:
                """The request body, after strict checks of its length (the body is not read when
                they fail, and the connection is closed after the answer)."""
                lengths = self.headers.get_all("Content-Length") or []
                if self.headers.get("Transfer-Encoding") is not None or not lengths:
                    self.close_connection = True
                    raise RequestError(411, "a Content-Length header is required (chunked bodies are not accepted)")
                if len(lengths) > 1 or not _DIGITS.fullmatch(lengths[0].strip()):
                    self.close_connection = True
                    raise RequestError(400, f"Content-Length ({len(lengths)} header(s), the first "
                                            f"{describe(lengths[0])}): expected one non-negative integer")
                length = int(lengths[0])
                if length > server.max_body_bytes:
                    self.close_connection = True
                    raise RequestError(413, f"a body of {length} bytes: expected at most {server.max_body_bytes}")
                if not server._reserve(length):
                    self.close_connection = True
                    raise RequestError(503, f"a body of {length} bytes does not fit among the bodies being received "
                                            f"(at most {server.max_pending_bytes} bytes at once): try again later")
                try:
                    body = self.rfile.read(length)  # allocates `length` bytes at once: hence the reservation
                except TimeoutError:
                    self.close_connection = True
                    raise RequestError(408, f"the body stopped arriving (nothing for {server.read_timeout_s:g} s)") \
                        from None
                except ConnectionError:
                    raise _HungUp from None
                finally:
                    server._unreserve(length)
                if len(body) != length:
                    self.close_connection = True
                    raise RequestError(400, f"the body ended after {len(body)} of {length} bytes")
                return body

            def do_POST(self):  # noqa: N802
                try:
                    body = self._body()
                    endpoint = server.post_endpoints.get(self.path)
                    if endpoint is None:
                        raise RequestError(404, f"unknown path {clip(self.path, _SHOWN_PATH_CHARS)!r}: "
                                                "expected /reset, /act or /close")
                    try:
                        request = unpack(body)
                    except WireError as exc:
                        raise RequestError(400, f"request body: {exc}") from None
                    if not isinstance(request, dict):
                        raise RequestError(400, f"request body is a {type(request).__name__}, expected a map")
                    reply = endpoint(request)
                except _HungUp:
                    log.info("%s: the client hung up mid-request", self._request_line())
                    self.close_connection = True
                    return None
                except RequestError as exc:
                    return self._refused(exc.status, clip(str(exc)))
                except SessionError as exc:
                    return self._refused(404, clip(str(exc)))
                except TooManySessions as exc:
                    return self._refused(503, clip(str(exc)))
                except Exception as exc:  # noqa: BLE001 - the policy failed on this input; keep serving
                    # the traceback (the server's paths and code) goes to the log, one line to the client
                    log.error("%s -> 400: the policy failed", self._request_line(), exc_info=True)
                    return self._reply(400, {"error": clip(f"{type(exc).__name__}: {exc}")})
                self._reply(200, reply)

        # the POST paths and what answers each (the protocol's requests, declared once)
        self.post_endpoints = {"/reset": self._reset, "/act": self._act, "/close": self._close}
        self.httpd = _BoundedHTTPServer((host, port), Handler, int(max_connections))
        self.host, self.port = self.httpd.server_address[:2]
        if max_batch > 1:  # unbatched, each request runs in its connection's thread, as before batching
            self._batcher = Batcher(policy, max_batch, max_wait_ms / 1e3, self.stats, self._check_chunk,
                                    lambda: len(self.sessions))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        """Open client connections (each holds a thread)."""
        return self.httpd.connections

    @property
    def pending_bytes(self) -> int:
        """The ``Content-Length`` sum of the bodies being received now."""
        return self._pending

    def _reserve(self, length: int) -> bool:
        with self._pending_lock:
            if self._pending + length > self.max_pending_bytes:
                return False
            self._pending += length
            return True

    def _unreserve(self, length: int) -> None:
        with self._pending_lock:
            self._pending -= length

    # -- endpoints ---------------------------------------------------------------------------
    @staticmethod
    def _field(request: dict, name: str, kind: type, optional: bool = False):
        value = request.get(name)
        if value is None and optional:
            return None
        if not isinstance(value, kind):
            raise RequestError(400, f"field {name!r} = {describe(value)}: expected a {kind.__name__}")
        return value

    def _reset(self, request: dict) -> dict:
        instruction = self._field(request, "instruction", str)
        session = self.sessions.open(instruction, self._field(request, "session", str, optional=True))
        return {"session": session.id}

    def _check_chunk(self, chunk) -> np.ndarray:
        return check_chunk(chunk, self.policy.action_dim, type(self.policy).__name__)

    def _act(self, request: dict) -> dict:
        session = self.sessions.get(self._field(request, "session", str))
        obs = request.get("observation")
        check_observation(obs, self.observation_shapes)
        arrived = time.perf_counter()
        with session.lock:  # one request of a session at a time: never twice in one batch
            if self._batcher is not None and session.policy.batchable():
                try:
                    chunk = self._batcher.submit(session.policy, obs, arrived)
                except BatcherClosed as exc:
                    raise RequestError(503, str(exc)) from None
            else:
                started = time.perf_counter()
                try:
                    chunk = self._check_chunk(session.policy.act(obs))
                finally:
                    self.stats.record([started - arrived], time.perf_counter() - started)
            # the session's episode counters so far (Policy.episode_counters): a client's episode
            # rows then count what the served policy did, as an in-process policy's do
            return {"action": chunk, "counters": session.policy.episode_counters()}

    def stats_snapshot(self) -> dict:
        """The ``GET /stats`` answer: ``ServingStats.snapshot()`` and whether the policy declares
        batched inference (``batchable``: False means every forward pass has one request)."""
        return {**self.stats.snapshot(), "batchable": bool(self.policy.batchable())}

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
        if self._batcher is not None:
            self._batcher.close()
