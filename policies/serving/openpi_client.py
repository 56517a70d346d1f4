"""``OpenPIPolicy``: any server that speaks openpi's websocket policy protocol, as a ``Policy``.

pi0, pi0-FAST and pi0.5 served by openpi (``scripts/serve_policy.py``), a LeRobot policy behind
``OpenPIServer``, or this suite's own ``OpenPIServer``: connect, read the metadata, then send an
observation map per query and read ``actions``. The observation keys the server expects differ
by model and robot, so they are mapped: ``keys`` renames this suite's observation entries to the
server's (entries not named are sent as they are), and the instruction is sent under
``prompt_key``. The reply's ``actions_key`` holds an (H, action_dim) chunk (a 1-D reply is one
action). A connection the server has closed (``OpenPIServer`` closes idle ones) is reopened at
the next ``reset``.

In an evaluation config::

    base:
      name: pi0
      policy:
        kind: openpi
        url: ws://127.0.0.1:8000
        keys: {image: observation/image, wrist_image: observation/wrist_image, proprio: observation/state}
        chunk_size: 10          # when the server's metadata does not say

A model trained in an ecosystem's LIBERO setup reads its observations as that ecosystem's
client built them: ``convention`` (``policies.conventions``: ``openpi_libero``,
``lerobot_libero``) converts the LIBERO env's observation into exactly that map (keys, image
rotation and size, the state vector and its dtype) instead of renaming with ``keys``.
"""

from __future__ import annotations

from contextlib import ExitStack

import numpy as np

from policies.base import Policy
from policies.conventions import convention as _convention
from policies.error_base import VlaEnvsError
from policies.serving.wire import describe, pack, unpack


class OpenPIError(VlaEnvsError, RuntimeError):
    """The server answered with an error (its traceback) or closed the connection."""


class OpenPIPolicy(Policy):
    def __init__(self, url: str, action_dim: int | None = None, chunk_size: int | None = None,
                 keys: dict[str, str] | None = None, prompt_key: str = "prompt", actions_key: str = "actions",
                 timeout_s: float = 60.0, convention: str | None = None):
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"url={url!r}: expected ws://host:port (openpi's websocket protocol)")
        if convention is not None and keys:
            raise ValueError(f"keys={keys!r} with convention={convention!r}: the convention names every key; "
                             "expected one of them")
        self.convention = None if convention is None else _convention(convention)
        self.url, self.timeout_s = url, timeout_s
        self.keys, self.prompt_key, self.actions_key = dict(keys or {}), prompt_key, actions_key
        self._stack = ExitStack()
        self._connect()
        self.action_dim = self._size("action_dim", action_dim)
        self.chunk_size = self._size("chunk_size", chunk_size)

    def _connect(self) -> None:
        from websockets.sync.client import connect

        # websockets 17.1 deprecates holding connect()'s result outside a `with`; the connection
        # outlives this call (one per episode, across act calls), so its `with` is this ExitStack,
        # closed in close() or when the next connection replaces it
        self._stack.close()
        self._ws = self._stack.enter_context(
            connect(self.url, compression=None, max_size=None, open_timeout=self.timeout_s))
        self.metadata = unpack(self._ws.recv(timeout=self.timeout_s))
        if not isinstance(self.metadata, dict):
            raise OpenPIError(f"{self.url} sent metadata that is {describe(self.metadata)}: expected a map")

    def _size(self, name: str, given: int | None) -> int:
        value = given if given is not None else self.metadata.get(name)
        if value is None:
            raise ValueError(f"{name}: the server at {self.url} does not say it in its metadata "
                             f"({sorted(self.metadata)}); expected it in the policy spec")
        return int(value)

    def fork(self) -> OpenPIPolicy:
        """Another connection to the same server (openpi servers keep a state per connection)."""
        return OpenPIPolicy(self.url, self.action_dim, self.chunk_size, self.keys, self.prompt_key,
                            self.actions_key, self.timeout_s,
                            None if self.convention is None else self.convention.name)

    def reset(self, instruction: str = "") -> None:
        from websockets.protocol import State

        super().reset(instruction)
        if self._ws.state is not State.OPEN:  # e.g. closed by the server after its idle timeout
            self._connect()  # an episode starts: the server's per-connection state is not needed

    def act(self, obs) -> np.ndarray:
        from websockets.exceptions import ConnectionClosed

        if self.convention is not None:
            message = self.convention.convert(obs)
        else:
            message = {self.keys.get(k, k): v for k, v in obs.items()}
        message[self.prompt_key] = self.instruction
        try:
            self._ws.send(pack(message))
            reply = self._ws.recv(timeout=self.timeout_s)
        except ConnectionClosed as exc:
            raise OpenPIError(f"{self.url} closed the connection ({exc})") from None
        if isinstance(reply, str):
            raise OpenPIError(f"the server at {self.url} failed:\n{reply}")
        reply = unpack(reply)
        if not isinstance(reply, dict) or self.actions_key not in reply:
            raise OpenPIError(f"the server's reply holds {sorted(reply) if isinstance(reply, dict) else type(reply).__name__}, "
                              f"expected {self.actions_key!r}")
        actions = np.asarray(reply[self.actions_key], dtype=np.float32)
        if actions.ndim == 1:
            actions = actions[None]
        if actions.ndim != 2 or actions.shape[1] != self.action_dim:
            raise OpenPIError(f"reply[{self.actions_key!r}] has shape {actions.shape}, expected (H, {self.action_dim})")
        return actions

    def close(self) -> None:
        self._stack.close()
