"""One policy state per client episode: what makes a policy server safe for many clients.

A server holds one loaded policy; each session (a client's episode) gets its own fork of it
(``Policy.fork()``: the same behaviour, its own instruction and per-episode state), so answers
for one client never depend on another's instruction or history. Sessions are bounded in
number; a session idle for longer than ``idle_timeout_s`` expires and its fork is kept for reuse
(forking a large model is the expensive part). Requests of different sessions run concurrently;
each session serialises its own.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from policies.base import Policy
from policies.error_base import VlaEnvsError
from policies.serving.wire import describe


class SessionError(VlaEnvsError, KeyError):
    """An unknown or expired session id."""

    def __str__(self) -> str:  # KeyError quotes its message
        return str(self.args[0])


class TooManySessions(VlaEnvsError, RuntimeError):
    """Every session slot is taken by a session that has not expired."""


@dataclass
class Session:
    id: str
    policy: Policy
    instruction: str = ""
    last_used: float = 0.0
    expires: bool = True  # False: a connection holds it (a websocket), it ends when the connection does
    lock: threading.Lock = field(default_factory=threading.Lock)


class SessionPool:
    """Sessions over forks of ``policy``; thread-safe."""

    def __init__(self, policy: Policy, max_sessions: int = 64, idle_timeout_s: float = 600.0,
                 clock: Callable[[], float] = time.monotonic):
        if max_sessions < 1:
            raise ValueError(f"max_sessions={max_sessions}: expected >= 1")
        if not idle_timeout_s > 0:
            raise ValueError(f"idle_timeout_s={idle_timeout_s}: expected > 0")
        self.policy = policy
        self.max_sessions = int(max_sessions)
        self.idle_timeout_s = float(idle_timeout_s)
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._spare: list[Policy] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def _expire(self, now: float) -> None:
        for sid in [s.id for s in self._sessions.values() if s.expires and now - s.last_used > self.idle_timeout_s]:
            self._spare.append(self._sessions.pop(sid).policy)

    def open(self, instruction: str = "", session_id: str | None = None, expires: bool = True) -> Session:
        """Start an episode: reset session ``session_id`` if it is alive, else a new session
        (``expires=False``: one that only ``close`` ends)."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            session = self._sessions.get(session_id) if session_id is not None else None
            if session is None:
                if len(self._sessions) >= self.max_sessions:
                    raise TooManySessions(
                        f"all {self.max_sessions} sessions are in use (none idle for {self.idle_timeout_s:g} s): "
                        "close finished sessions, or start the server with a larger --max-sessions"
                    )
                policy = self._spare.pop() if self._spare else None
                session = Session(secrets.token_hex(8), policy, expires=expires)  # type: ignore[arg-type]
                self._sessions[session.id] = session
            session.last_used = now
        with session.lock:
            if session.policy is None:  # forked outside the pool lock: other sessions keep going
                session.policy = self.policy.fork()
            session.policy.reset(instruction)
            session.instruction = instruction
        return session

    def get(self, session_id: str) -> Session:
        with self._lock:
            now = self._clock()
            self._expire(now)
            session = self._sessions.get(session_id)
            if session is None:
                raise SessionError(f"session {describe(session_id)} is unknown or expired (idle sessions expire after "
                                   f"{self.idle_timeout_s:g} s): expected the id a reset returned")
            session.last_used = now
            return session

    def close(self, session_id: str) -> None:
        with self._lock:
            session = self._sessions.pop(session_id, None)
            if session is not None and session.policy is not None:
                self._spare.append(session.policy)
