"""openpi's websocket policy protocol, served from any ``Policy``.

The protocol (``openpi_client.websocket_client_policy`` and openpi's ``WebsocketPolicyServer``):
the client connects (``ws://host:port``); the server sends its metadata, a msgpack-numpy map;
then each binary message from the client is an observation map and the server answers
``{"actions": (H, action_dim) array, "server_timing": {"infer_ms": ...}}``. On an error the
server sends the traceback as a text frame and closes with code 1011 (INTERNAL_ERROR), as
openpi does. ``GET /healthz`` answers 200 without a websocket handshake.

Each connection is a session (``policies.serving.sessions``): its own fork of the policy. The
instruction travels in the observation under ``prompt_key`` (openpi's ``"prompt"``); the session's
policy is reset whenever it changes. ``obs_keys`` renames the client's observation keys to the
policy's (e.g. ``{"observation/image": "image"}`` for a client that speaks LIBERO's names).
"""

from __future__ import annotations

import http
import threading
import time
import traceback

from policies.base import Policy, check_chunk
from policies.serving.sessions import SessionPool, TooManySessions
from policies.serving.wire import WireError, pack, unpack

DEFAULT_HOST = "127.0.0.1"
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013


class OpenPIServer:
    """Serves ``policy`` over openpi's websocket protocol (a thread per connection)."""

    def __init__(self, policy: Policy, host: str = DEFAULT_HOST, port: int = 0, prompt_key: str = "prompt",
                 obs_keys: dict[str, str] | None = None, metadata: dict | None = None, max_sessions: int = 64,
                 idle_timeout_s: float = 600.0, max_message_bytes: int = 64 * 2**20):
        from websockets.sync.server import serve

        self.policy = policy
        self.prompt_key = prompt_key
        self.obs_keys = dict(obs_keys or {})
        self.sessions = SessionPool(policy, max_sessions, idle_timeout_s)
        self.metadata = {"policy": type(policy).__name__, "action_dim": policy.action_dim,
                         "chunk_size": policy.chunk_size, "prompt_key": prompt_key, **(metadata or {})}
        self._server = serve(self._handle, host, port, compression=None, max_size=max_message_bytes,
                             process_request=self._health_check)
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
        if not isinstance(prompt, str):
            raise WireError(f"observation[{self.prompt_key!r}] = {prompt!r}: expected a string")
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
                message = websocket.recv()
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
                except Exception:  # noqa: BLE001 - openpi's convention: the traceback, then close
                    websocket.send(traceback.format_exc())
                    websocket.close(INTERNAL_ERROR, "Internal server error. Traceback included in previous frame.")
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
