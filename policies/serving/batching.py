"""Dynamic batching for a policy server: concurrent sessions' requests in one forward pass.

A ``Batcher`` owns one worker thread. A request waits in its queue until the worker takes a
batch: the oldest request and those behind it, up to ``max_batch``, once the oldest has waited
``max_wait_s`` (or at once when every live session is already queued: each session has at most
one request in flight, so no one else can join). The batch runs as one
``policy.act_batch(sessions, observations)``, each session being that client's fork with its own
instruction and episode state. A batch of one is a plain ``act`` call. When a batch raises (one
bad observation fails the whole forward pass), each of its requests is run again alone, so the
error reaches only the request that caused it.

``ServingStats`` counts what the forward passes were: how many, their sizes, how long requests
waited for one and how long they took (a server's ``GET /stats``).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from policies.base import Policy
from policies.error_base import VlaEnvsError

log = logging.getLogger(__name__)

STATS_WINDOW = 4096  # the p90 of queue waits is over this many of the latest requests


class BatcherClosed(VlaEnvsError, RuntimeError):
    """The server is shutting down: no new requests are taken."""


class ServingStats:
    """Forward passes of a server, thread-safe; ``snapshot()`` is the ``GET /stats`` answer."""

    def __init__(self, max_batch: int, max_wait_ms: float):
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        self._lock = threading.Lock()
        self._sizes: collections.Counter[int] = collections.Counter()
        self._requests = 0
        self._failures = 0
        self._wait_total_s = 0.0
        self._waits_s: collections.deque[float] = collections.deque(maxlen=STATS_WINDOW)
        self._forward_total_s = 0.0

    def record(self, waits_s: list[float], forward_s: float) -> None:
        """One forward pass over ``len(waits_s)`` requests, which waited that long for it."""
        with self._lock:
            self._sizes[len(waits_s)] += 1
            self._requests += len(waits_s)
            self._wait_total_s += sum(waits_s)
            self._waits_s.extend(waits_s)
            self._forward_total_s += forward_s

    def record_failed_batch(self) -> None:
        """A batch that raised (its requests are then run, and recorded, one by one)."""
        with self._lock:
            self._failures += 1

    def snapshot(self) -> dict:
        with self._lock:
            passes = sum(self._sizes.values())
            waits = np.asarray(self._waits_s, dtype=np.float64)
            return {
                "max_batch": self.max_batch,
                "max_wait_ms": self.max_wait_ms,
                "requests": self._requests,
                "forward_passes": passes,
                "batch_sizes": {str(size): count for size, count in sorted(self._sizes.items())},
                "mean_batch_size": self._requests / passes if passes else 0.0,
                "failed_batches": self._failures,
                "queue_wait_ms": {"mean": 1e3 * self._wait_total_s / self._requests if self._requests else 0.0,
                                  "p90": float(1e3 * np.percentile(waits, 90)) if waits.size else 0.0},
                "forward_ms": {"mean": 1e3 * self._forward_total_s / passes if passes else 0.0},
            }


@dataclass(eq=False)
class _Pending:
    """One request waiting for its batch, then its answer or its error."""

    session: Policy
    observation: Any
    arrived: float  # perf_counter() when the request was accepted
    done: threading.Event = field(default_factory=threading.Event)
    answer: np.ndarray | None = None
    error: BaseException | None = None


class Batcher:
    """Stacks concurrent requests of ``policy``'s sessions into ``policy.act_batch`` calls.

    ``check``: validates one answer (raises for a bad one; that request alone fails);
    ``live_sessions``: how many sessions could have a request in flight (waiting stops early
    when that many are queued).
    """

    def __init__(self, policy: Policy, max_batch: int, max_wait_s: float, stats: ServingStats,
                 check: Callable[[np.ndarray], np.ndarray], live_sessions: Callable[[], int]):
        self.policy = policy
        self.max_batch = int(max_batch)
        self.max_wait_s = float(max_wait_s)
        self.stats = stats
        self._check = check
        self._live_sessions = live_sessions
        self._queue: collections.deque[_Pending] = collections.deque()
        self._ready = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="policy-batcher", daemon=True)
        self._worker.start()

    def submit(self, session: Policy, observation: Any, arrived: float) -> np.ndarray:
        """``session``'s answer to ``observation``, computed in a batch; raises its error. The
        caller holds the session's lock, so a session is never twice in one batch."""
        pending = _Pending(session, observation, arrived)
        with self._ready:
            if self._closed:
                raise BatcherClosed("the server is shutting down")
            self._queue.append(pending)
            self._ready.notify()
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.answer is not None
        return pending.answer

    def close(self, timeout_s: float = 10.0) -> None:
        """Take no more requests; the worker answers those queued, then stops."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        self._worker.join(timeout_s)

    def _next_batch(self) -> list[_Pending] | None:
        with self._ready:
            while not self._queue:
                if self._closed:
                    return None
                self._ready.wait()
            deadline = self._queue[0].arrived + self.max_wait_s
            while len(self._queue) < self.max_batch and not self._closed:
                left = deadline - time.perf_counter()
                # every session that could send a request has one queued: waiting gains nothing
                if left <= 0 or len(self._queue) >= self._live_sessions():
                    break
                self._ready.wait(left)
            return [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                self._answer(batch)
            except BaseException as exc:  # noqa: BLE001 - a bug here must not leave clients waiting forever
                log.error("the batch worker failed", exc_info=True)
                for pending in batch:
                    if pending.answer is None and pending.error is None:
                        pending.error = exc
            finally:
                for pending in batch:
                    pending.done.set()

    def _answer(self, batch: list[_Pending]) -> None:
        if len(batch) == 1:  # a plain act: a lone client gets exactly the unbatched answer
            self._alone(batch[0])
            return
        started = time.perf_counter()
        try:
            answers = self.policy.act_batch([p.session for p in batch], [p.observation for p in batch])
            if len(answers) != len(batch):
                raise ValueError(f"{type(self.policy).__name__}.act_batch returned {len(answers)} answers for a "
                                 f"batch of {len(batch)}")
        except Exception as exc:  # noqa: BLE001 - e.g. one bad observation: find it by running each alone
            # one line: the request that caused it logs its own traceback when it fails alone
            log.warning("a batch of %d failed (%s: %s); answering its requests one by one", len(batch),
                        type(exc).__name__, exc)
            self.stats.record_failed_batch()
            for pending in batch:
                self._alone(pending)
            return
        self.stats.record([started - p.arrived for p in batch], time.perf_counter() - started)
        for pending, answer in zip(batch, answers):
            try:
                pending.answer = self._check(answer)
            except Exception as exc:  # noqa: BLE001 - this request's answer is bad, not the others'
                pending.error = exc

    def _alone(self, pending: _Pending) -> None:
        started = time.perf_counter()
        try:
            pending.answer = self._check(pending.session.act(pending.observation))
        except Exception as exc:  # noqa: BLE001 - reported to this request's client
            pending.error = exc
        finally:
            self.stats.record([started - pending.arrived], time.perf_counter() - started)
