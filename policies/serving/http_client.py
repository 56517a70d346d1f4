"""``RemotePolicy``: a policy served by ``PolicyServer`` (this suite's HTTP protocol), as a ``Policy``."""

from __future__ import annotations

import http.client
import socket
import weakref
from typing import Any
from urllib.parse import urlparse

import numpy as np

from policies.base import EPISODE_COUNTERS, Policy
from policies.error_base import VlaEnvsError
from policies.serving.wire import WireError, pack, unpack

RELEASE_TIMEOUT_S = 5.0  # closing a session must not hold up a garbage collection or an exit for long


class _NoDelayConnection(http.client.HTTPConnection):
    """http.client sends a body over 2,920 bytes apart from its headers; without TCP_NODELAY the
    body waits for the server's delayed ACK (~40 ms a request)."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class RemoteError(VlaEnvsError, RuntimeError):
    """The policy server answered with an error."""


class _Link:
    """A client's connection and session: what its finalizer releases (it holds no reference to
    the ``RemotePolicy``, or that would never be collected)."""

    def __init__(self, host: str, port: int, timeout_s: float):
        self.connection = _NoDelayConnection(host, port, timeout=timeout_s)
        self.session: str | None = None

    def request(self, method: str, path: str, body: Any = None) -> dict:
        payload = pack(body) if body is not None else None
        headers = {"Content-Type": "application/msgpack"} if payload is not None else {}
        for attempt in range(2):
            reused = self.connection.sock is not None
            try:
                self.connection.request(method, path, body=payload, headers=headers)
                response = self.connection.getresponse()
                data = response.read()
                break
            except ConnectionError:
                self.connection.close()
                # the server closes a connection left idle for its read timeout, before reading a
                # request on it: a request that fails on a kept-alive connection was not handled
                if not reused or attempt:
                    raise
            except Exception:
                self.connection.close()  # e.g. a timeout mid-answer: the next request starts afresh
                raise
        reply = unpack(data)
        if response.status != 200:
            error = reply.get("error") if isinstance(reply, dict) else reply
            raise RemoteError(f"{method} {path} -> {response.status}: {error}")
        return reply

    def release(self) -> None:
        if self.session is not None:
            timeout = self.connection.timeout
            self.connection.timeout = min(timeout or RELEASE_TIMEOUT_S, RELEASE_TIMEOUT_S)
            if self.connection.sock is not None:
                self.connection.sock.settimeout(self.connection.timeout)
            try:
                self.request("POST", "/close", {"session": self.session})
            except (OSError, RemoteError, WireError, http.client.HTTPException):
                pass  # the server is gone or the session expired: nothing to release
            self.session = None
            self.connection.timeout = timeout  # for a reconnection after close()
        self.connection.close()


class RemotePolicy(Policy):
    """A ``Policy`` whose ``act`` runs on a ``PolicyServer``, in a session of its own (opened by
    ``reset``, kept across this client's episodes, closed by ``close``, or when the policy is
    garbage-collected without ``close``)."""

    def __init__(self, url: str, timeout_s: float = 30.0):
        parsed = urlparse(url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"url={url!r}: expected http://host:port")
        self.url = url
        self.timeout_s = timeout_s
        self._link = _Link(parsed.hostname, parsed.port or 80, timeout_s)
        self._release = weakref.finalize(self, _Link.release, self._link)
        info = self._link.request("GET", "/info")
        self.action_dim = int(info["action_dim"])
        self.chunk_size = int(info["chunk_size"])
        self.remote_policy = info["policy"]
        # the served policy's own open-loop steps (a compressed variant's), None when it has none
        self.execute_steps = info.get("execute_steps")
        self._counters: dict[str, int] | None = None

    @property
    def session(self) -> str | None:
        return self._link.session

    @session.setter
    def session(self, value: str | None) -> None:
        self._link.session = value

    def _request(self, method: str, path: str, body: Any = None) -> dict:
        return self._link.request(method, path, body)

    def fork(self) -> RemotePolicy:
        """Another client of the same server (its own connection and session)."""
        return RemotePolicy(self.url, self.timeout_s)

    def episode_counters(self) -> dict[str, int]:
        """The served session's counters as of its last answer (zero before the first): what
        the served policy counted in this episode."""
        counted = self._counters or {}
        return {key: int(counted.get(key, 0)) for key in EPISODE_COUNTERS}

    def reset(self, instruction: str = "") -> None:
        super().reset(instruction)
        self._counters = None
        self.session = self._request("POST", "/reset", {"instruction": instruction, "session": self.session})["session"]
        if not self._release.alive:  # used again after close(): release this session too when dropped
            self._release = weakref.finalize(self, _Link.release, self._link)

    def act(self, obs) -> np.ndarray:
        if self.session is None:
            self.reset(self.instruction)
        reply = self._request("POST", "/act", {"session": self.session, "observation": dict(obs)})
        self._counters = reply.get("counters")  # servers before counters were served send none
        return np.array(reply["action"])

    def close(self) -> None:
        self._release()
