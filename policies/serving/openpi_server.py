"""openpi's websocket policy protocol, served from any ``Policy``.

The protocol (``openpi_client.websocket_client_policy`` and openpi's ``WebsocketPolicyServer``):
the client connects (``ws://host:port``); the server sends its metadata, a msgpack-numpy map;
then each binary message from the client is an observation map and the server answers
``{"actions": (H, action_dim) array, "server_timing": {"infer_ms": ...}}``. On an error the
server sends a text frame and closes with code 1011 (INTERNAL_ERROR), as openpi does; the frame
is one line, ``<ExceptionType>: <message>`` (at most ``MAX_ERROR_CHARS``), and the full
traceback goes to the server's log (logger ``policies.serving.openpi_server``), so a client
never sees the server's file paths and code. ``traceback_to_client=True`` (``--traceback-to-
client``) sends the traceback itself as openpi does (at most ``MAX_TRACEBACK_CHARS`` of it).
Error messages never quote the client's data. ``GET /healthz`` answers 200 without a websocket
handshake.

A connection that sends no message for ``idle_timeout_s`` is closed (code 1000) and its session
freed. What one connection holds is bounded by ``max_message_bytes`` times the few messages
read ahead (``MAX_QUEUE``); connections beyond ``max_sessions`` are closed at once (1013), and a
handshake must finish within websockets' ``open_timeout`` (10 s).

Each connection is a session (``policies.serving.sessions``): its own fork of the policy. The
instruction travels in the observation under ``prompt_key`` (openpi's ``"prompt"``); the session's
policy is reset whenever it changes. ``obs_keys`` renames the client's observation keys to the
policy's (e.g. ``{"observation/image": "image"}`` for a client that speaks LIBERO's names).
"""

from __future__ import annotations

import http
import logging
import threading
import time
import traceback

import numpy as np

from policies.base import Policy, check_chunk
from policies.serving.sessions import SessionPool, TooManySessions
from policies.serving.wire import MAX_ERROR_CHARS, WireError, clip, describe, pack, unpack

DEFAULT_HOST = "127.0.0.1"
NORMAL_CLOSURE = 1000
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013
MAX_TRACEBACK_CHARS = 4096
MAX_QUEUE = 2  # messages read ahead of the one being answered: the protocol is one request at a time

log = logging.getLogger(__name__)


def _error_frame() -> str:
    """The current exception's traceback, its first line and its end (the error) kept when it is long."""
    text = traceback.format_exc()
    if len(text) <= MAX_TRACEBACK_CHARS:
        return text
    head = text.split("\n", 1)[0][:200]
    return f"{head}\n  ... ({len(text)} characters cut)\n" + text[-(MAX_TRACEBACK_CHARS - len(head) - 60):]


def _error_line(exc: BaseException) -> str:
    """``<ExceptionType>: <message>`` on one line, cut to ``MAX_ERROR_CHARS``: what a client needs
    to fix its request, without the server's file paths and code that a traceback shows."""
    return clip(" ".join(f"{type(exc).__name__}: {exc}".split()), MAX_ERROR_CHARS)


class OpenPIServer:
    """Serves ``policy`` over openpi's websocket protocol (a thread per connection; one that is
    silent for ``idle_timeout_s`` is closed). A failed request is answered with a one-line error
    and logged with its traceback; ``traceback_to_client=True`` answers the traceback, as openpi."""

    def __init__(self, policy: Policy, host: str = DEFAULT_HOST, port: int = 0, prompt_key: str = "prompt",
                 obs_keys: dict[str, str] | None = None, metadata: dict | None = None, max_sessions: int = 64,
                 idle_timeout_s: float = 600.0, max_message_bytes: int = 64 * 2**20,
                 traceback_to_client: bool = False):
        from websockets.sync.server import serve

        if not isinstance(traceback_to_client, bool):
            raise ValueError(f"traceback_to_client={traceback_to_client!r}: expected True or False")
        self.traceback_to_client = traceback_to_client
        self.policy = policy
        self.prompt_key = prompt_key
        self.obs_keys = dict(obs_keys or {})
        self.sessions = SessionPool(policy, max_sessions, idle_timeout_s)
        self.metadata = {"policy": type(policy).__name__, "action_dim": policy.action_dim,
                         "chunk_size": policy.chunk_size, "prompt_key": prompt_key, **(metadata or {})}
        self._server = serve(self._handle, host, port, compression=None, max_size=max_message_bytes,
                             max_queue=MAX_QUEUE, process_request=self._health_check)
        self.host, self.port = self._server.socket.getsockname()[:2]

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @staticmethod
    def _health_check(connection, request):
        if request.path == "/healthz":
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        return None

    def _observation(self, message: bytes) -> tuple[dict, str]:
        obs = unpack(message)
        if not isinstance(obs, dict):
            raise WireError(f"an observation must be a map, got {type(obs).__name__}")
        prompt = obs.get(self.prompt_key, "")
        if isinstance(prompt, bytes):
            prompt = prompt.decode()
        if isinstance(prompt, np.ndarray) and prompt.dtype.kind == "U" and prompt.ndim == 0:
            prompt = str(prompt)  # np.asarray(task) from a dataset
        if not isinstance(prompt, str):
            raise WireError(f"observation[{self.prompt_key!r}] is {describe(prompt)}: expected a string")
        policy_obs = {self.obs_keys.get(k, k): v for k, v in obs.items() if k != self.prompt_key}
        return policy_obs, prompt

    def _handle(self, websocket) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            session = self.sessions.open("", expires=False)  # the connection holds it
        except TooManySessions as exc:
            websocket.close(TRY_AGAIN_LATER, str(exc)[:120])
            return
        try:
            websocket.send(pack(self.metadata))
            while True:
                try:
                    message = websocket.recv(timeout=self.sessions.idle_timeout_s)
                except TimeoutError:
                    websocket.close(NORMAL_CLOSURE,
                                    f"no message for {self.sessions.idle_timeout_s:g} s: idle connections are closed")
                    return
                start = time.perf_counter()
                try:
                    if isinstance(message, str):
                        raise WireError("a text frame: expected a binary msgpack observation")
                    obs, prompt = self._observation(message)
                    with session.lock:
                        if prompt != session.instruction:
                            session.policy.reset(prompt)
                            session.instruction = prompt
                        actions = check_chunk(session.policy.act(obs), self.policy.action_dim, type(self.policy).__name__)
                except Exception as exc:  # noqa: BLE001 - openpi's convention: the error, then close
                    log.error("request from %s failed: %s", websocket.remote_address, _error_line(exc), exc_info=True)
                    if self.traceback_to_client:
                        websocket.send(_error_frame())
                        websocket.close(INTERNAL_ERROR, "Internal server error. Traceback included in previous frame.")
                    else:
                        websocket.send(_error_line(exc))
                        websocket.close(INTERNAL_ERROR, "Internal server error. Error included in previous frame.")
                    return
                websocket.send(pack({"actions": actions,
                                     "server_timing": {"infer_ms": (time.perf_counter() - start) * 1e3}}))
        except ConnectionClosed:
            pass
        finally:
            self.sessions.close(session.id)

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def start(self) -> OpenPIServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def close(self) -> None:
        self._server.shutdown()
