"""``RemotePolicy``: a policy served by ``PolicyServer`` (this suite's HTTP protocol), as a ``Policy``."""

from __future__ import annotations

import http.client
import socket
from typing import Any
from urllib.parse import urlparse

import numpy as np

from policies.base import Policy
from policies.serving.wire import pack, unpack


class _NoDelayConnection(http.client.HTTPConnection):
    """http.client sends a body over 2,920 bytes apart from its headers; without TCP_NODELAY the
    body waits for the server's delayed ACK (~40 ms a request)."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class RemoteError(RuntimeError):
    """The policy server answered with an error."""


class RemotePolicy(Policy):
    """A ``Policy`` whose ``act`` runs on a ``PolicyServer``, in a session of its own (opened by
    ``reset``, kept across this client's episodes, closed by ``close``)."""

    def __init__(self, url: str, timeout_s: float = 30.0):
        parsed = urlparse(url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"url={url!r}: expected http://host:port")
        self.url = url
        self.timeout_s = timeout_s
        self._connection = _NoDelayConnection(parsed.hostname, parsed.port or 80, timeout=timeout_s)
        info = self._request("GET", "/info")
        self.action_dim = int(info["action_dim"])
        self.chunk_size = int(info["chunk_size"])
        self.remote_policy = info["policy"]
        self.session: str | None = None

    def _request(self, method: str, path: str, body: Any = None) -> dict:
        payload = pack(body) if body is not None else None
        headers = {"Content-Type": "application/msgpack"} if payload is not None else {}
        self._connection.request(method, path, body=payload, headers=headers)
        response = self._connection.getresponse()
        reply = unpack(response.read())
        if response.status != 200:
            raise RemoteError(f"{method} {path} -> {response.status}: {reply.get('error')}")
        return reply

    def fork(self) -> RemotePolicy:
        """Another client of the same server (its own connection and session)."""
        return RemotePolicy(self.url, self.timeout_s)

    def reset(self, instruction: str = "") -> None:
        super().reset(instruction)
        self.session = self._request("POST", "/reset", {"instruction": instruction, "session": self.session})["session"]

    def act(self, obs) -> np.ndarray:
        if self.session is None:
            self.reset(self.instruction)
        return np.array(self._request("POST", "/act", {"session": self.session, "observation": dict(obs)})["action"])

    def close(self) -> None:
        if self.session is not None:
            try:
                self._request("POST", "/close", {"session": self.session})
            except (OSError, RemoteError, http.client.HTTPException):
                pass  # the server is gone or the session expired: nothing to release
            self.session = None
        self._connection.close()
