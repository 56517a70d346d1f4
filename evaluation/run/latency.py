"""Latency-aware chunk execution: does a faster model finish the task sooner?

Latency models (``docs/evaluation.md`` has worked examples):

- ``frozen``: simulated time stops while the policy computes (every benchmark's convention).
- ``measured``: each policy query takes its measured wall-clock time ``t_inf``; meanwhile the
  simulation runs ``round(t_inf * control_freq)`` control steps (half up).
- ``{fixed_ms: X}``: the same with ``t_inf = X`` ms (a target device); deterministic.
- ``profiled``: ``t_inf`` = the variant's median latency per call from ``profile()`` on this
  machine, measured once before the episodes and recorded in run.json.
- ``{device: NAME}``: ``t_inf`` = FLOPs per call / the device's effective throughput + its
  overhead (``evaluation.run.devices``), computed once before the episodes and recorded.

Two ways to spend that time (``execution.schedule``):

- synchronous (``open_loop``, ``temporal_ensemble``; ``LatencyAwareExecutor``): the query starts
  when the schedule re-plans; while it is in flight the robot executes the previous chunk's
  not-yet-executed actions, then what ``execution.on_empty`` says: ``hold_position`` (an arm
  command of no motion, the gripper as last commanded; ``vla_envs.controllers.hold_position_action``)
  or ``repeat_last``. The new chunk then starts from its first action.
- ``async`` (``AsyncChunkExecutor``): the next query starts while the current chunk still has
  ``query_when_remaining`` actions to run; the robot keeps executing them, the chunk arrives
  after the delay, its actions for steps already passed are dropped (stale), and the rest
  replace what was left of the older plan.

The episode clock starts when the first chunk is ready: the first query of an episode costs no
simulated time (before it the robot has no action to hold).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from evaluation.run.config import DeviceLatency, FixedLatency, LatencySpec
from evaluation.schema import StepSource  # noqa: F401 - where each step's action came from, also read from here
from policies.chunk_executor import ChunkExecutor


def delay_steps(inference_s: float, control_freq_hz: float) -> int:
    """Control steps that pass during an inference of ``inference_s`` seconds (rounded half up)."""
    if inference_s < 0 or control_freq_hz <= 0:
        raise ValueError(f"inference_s={inference_s}, control_freq_hz={control_freq_hz}: expected >= 0 and > 0")
    return int(math.floor(inference_s * control_freq_hz + 0.5))


def latency_label(latency: LatencySpec, resolved_ms: float | None = None) -> str:
    """``frozen``, ``measured``, ``fixed_50ms``, ``profiled_3.62ms`` or ``jetson_orin_nano_2.1ms``
    (a device model): for tables."""
    if isinstance(latency, FixedLatency):
        return f"fixed_{latency.fixed_ms:g}ms"
    if isinstance(latency, DeviceLatency):
        return latency.device if resolved_ms is None else f"{latency.device}_{resolved_ms:.3g}ms"
    if latency == "profiled" and resolved_ms is not None:
        return f"profiled_{resolved_ms:.3g}ms"
    return str(latency)


@dataclass(frozen=True)
class ResolvedLatency:
    """What one variant's latency model is on one task, resolved once before the episodes: the
    one object the executor applies. ``kind``: ``frozen`` (no simulated time passes),
    ``measured`` (each query's wall-clock time) or ``fixed`` (``ms`` per query: ``{fixed_ms}``,
    and ``profiled`` and ``{device}`` once resolved); ``label`` names it in tables."""

    kind: Literal["frozen", "measured", "fixed"]
    label: str
    ms: float | None = None

    @classmethod
    def of(cls, latency: LatencySpec, resolved_ms: float | None = None) -> ResolvedLatency:
        """From a config's latency model; ``resolved_ms`` is the value of ``profiled`` and
        ``{device: NAME}`` (a ``ValueError`` naming the model when it is missing or not a time)."""
        if isinstance(latency, ResolvedLatency):
            return latency
        valid = latency in ("frozen", "measured", "profiled") or isinstance(latency, (FixedLatency, DeviceLatency))
        if not valid:
            raise ValueError(f"latency={latency!r}: expected 'frozen', 'measured', 'profiled', {{fixed_ms: X}} "
                             "or {device: NAME}")
        if latency in ("frozen", "measured"):
            return cls(latency, latency)
        if isinstance(latency, FixedLatency):
            return cls("fixed", latency_label(latency), float(latency.fixed_ms))
        if resolved_ms is None or not math.isfinite(resolved_ms) or resolved_ms < 0:
            raise ValueError(f"latency {latency_label(latency)!r} needs its resolved latency in ms "
                             f"(resolved before the episodes, recorded as resolved_latency_ms), got {resolved_ms!r}")
        return cls("fixed", latency_label(latency, resolved_ms), float(resolved_ms))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "label": self.label, "ms": self.ms}


class TimedChunkExecutor(ChunkExecutor):
    """A ``ChunkExecutor`` that times every policy query and keeps the last chunk."""

    def reset(self, instruction: str = "") -> None:
        super().reset(instruction)
        self.latencies_s: list[float] = []
        self.last_chunk: np.ndarray | None = None

    def query(self, obs) -> np.ndarray:
        start = time.perf_counter()
        chunk = super().query(obs)
        self.latencies_s.append(time.perf_counter() - start)
        self.last_chunk = chunk
        return chunk


def seam_mask(sources: list[StepSource]) -> np.ndarray:
    """Per step, whether a new chunk started there, the episode's first chunk excepted: the
    chunk seams that ``wrappers.metrics.jerk_ms_parts`` splits at."""
    starts = np.array([s.chunk_start for s in sources], dtype=bool)
    first = np.flatnonzero(starts)
    if len(first):
        starts[first[0]] = False
    return starts


class _LatencyModel:
    """The latency model's delay per query and the on_empty action, shared by both schedules.

    ``latency``: a ``ResolvedLatency``, or a config's latency model (with ``resolved_ms`` for
    ``profiled`` and ``{device: NAME}``), resolved here once."""

    def __init__(self, executor: TimedChunkExecutor, latency: ResolvedLatency | LatencySpec, control_freq_hz: float,
                 hold_action: Callable[[np.ndarray], np.ndarray] | None, resolved_ms: float | None):
        self.latency = ResolvedLatency.of(latency, resolved_ms)
        self.hold_action = hold_action
        self.executor = executor
        self.control_freq_hz = float(control_freq_hz)

    @property
    def inference_calls(self) -> int:
        return self.executor.inference_calls

    @property
    def latencies_s(self) -> list[float]:
        return self.executor.latencies_s

    def _delay_steps(self) -> int:
        """Control steps the query just made takes (0 for the episode's first query and when frozen)."""
        if self.latency.kind == "frozen" or self.executor.inference_calls == 1:
            return 0
        seconds = self.latency.ms / 1e3 if self.latency.kind == "fixed" else self.executor.latencies_s[-1]
        return delay_steps(seconds, self.control_freq_hz)

    def _hold(self, last: np.ndarray | None) -> np.ndarray:
        return last if self.hold_action is None else self.hold_action(last)

    def _emit(self, action: np.ndarray) -> np.ndarray:
        self._last_action = np.asarray(action, dtype=np.float32)
        return self._last_action


class LatencyAwareExecutor(_LatencyModel):
    """Turns a ``TimedChunkExecutor`` into one action per control step under a latency model,
    querying synchronously (when the executor's schedule re-plans)."""

    stale_actions = 0  # a synchronous chunk always starts from its first action

    def __init__(self, executor: TimedChunkExecutor, latency: ResolvedLatency | LatencySpec, control_freq_hz: float,
                 hold_action: Callable[[np.ndarray], np.ndarray] | None = None, resolved_ms: float | None = None):
        """``hold_action(last_action)``: what to execute while waiting once the previous chunk is
        used up; ``None`` repeats the last action. ``resolved_ms``: the latency ``profiled`` and
        ``{device: NAME}`` apply."""
        super().__init__(executor, latency, control_freq_hz, hold_action, resolved_ms)
        self.reset()

    def reset(self, instruction: str = "") -> None:
        self.executor.reset(instruction)
        self._filler: deque[np.ndarray] = deque()
        self._deferred: np.ndarray | None = None
        self._last_action: np.ndarray | None = None
        self.waiting_steps = 0  # control steps spent waiting for inference, this episode

    def _leftover(self, previous: np.ndarray | None) -> list[np.ndarray]:
        """The previous chunk's actions that the schedule had not executed."""
        if previous is None:
            return []
        executor = self.executor
        start = 1 if executor.schedule == "temporal_ensemble" else executor.execute_steps
        return list(previous[start:])

    def step(self, obs) -> tuple[np.ndarray, StepSource]:
        if self._filler:
            action = self._filler.popleft()
            self.waiting_steps += 1
            return self._emit(action), StepSource(queried=False, waiting=True)
        if self._deferred is not None:  # the chunk computed during the wait arrives
            action, self._deferred = self._deferred, None
            return self._emit(action), StepSource(queried=False, waiting=False, chunk_start=True)
        previous = self.executor.last_chunk
        queried = self.executor.needs_query
        action = self.executor.step(obs)
        n_wait = self._delay_steps() if queried else 0
        if n_wait == 0:
            return self._emit(action), StepSource(queried=queried, waiting=False, chunk_start=queried)
        filler = self._leftover(previous)[:n_wait]
        last = filler[-1] if filler else self._last_action
        filler += [self._hold(last)] * (n_wait - len(filler))
        self._deferred = action
        self._filler = deque(filler[1:])
        self.waiting_steps += 1
        return self._emit(filler[0]), StepSource(queried=True, waiting=True)


class AsyncChunkExecutor(_LatencyModel):
    """``execution.schedule: async``: query while the current chunk still has
    ``query_when_remaining`` actions, keep executing them while the query is in flight.

    A chunk queried on step ``t_q`` plans steps ``t_q, t_q + 1, ...``; it arrives on step
    ``t_q + d`` (``d`` the latency model's delay). Its first ``d`` actions are for steps already
    past: they are dropped and counted in ``stale_actions`` (LeRobot's asynchronous client does
    the same); the rest of its first ``execute_steps`` actions replace whatever was left of the
    older chunk. A step with no planned action left runs the ``on_empty`` action and counts in
    ``waiting_steps``. With ``frozen`` latency a chunk arrives on the step it was asked for.
    """

    def __init__(self, executor: TimedChunkExecutor, latency: ResolvedLatency | LatencySpec, control_freq_hz: float,
                 query_when_remaining: int, hold_action: Callable[[np.ndarray], np.ndarray] | None = None,
                 resolved_ms: float | None = None):
        if executor.schedule != "open_loop":
            raise ValueError(f"async execution runs an open-loop executor, got schedule={executor.schedule!r}")
        if not 0 <= query_when_remaining < executor.execute_steps:
            raise ValueError(f"query_when_remaining={query_when_remaining}: expected 0..{executor.execute_steps - 1} "
                             f"(fewer than the {executor.execute_steps} actions executed per chunk)")
        super().__init__(executor, latency, control_freq_hz, hold_action, resolved_ms)
        self.query_when_remaining = int(query_when_remaining)
        self.reset()

    def reset(self, instruction: str = "") -> None:
        self.executor.reset(instruction)
        self._queue: deque[np.ndarray] = deque()
        self._in_flight: tuple[int, np.ndarray, int] | None = None  # (query step, chunk, arrival step)
        self._last_action: np.ndarray | None = None
        self.t = 0
        self.waiting_steps = 0
        self.stale_actions = 0  # actions of arrived chunks dropped because their step had passed

    def step(self, obs) -> tuple[np.ndarray, StepSource]:
        # a chunk due now arrives before the query rule is checked, so a query can start on the
        # step its predecessor arrives; a chunk with no delay arrives on the step it is asked for
        chunk_start = self._arrive()
        queried = self._in_flight is None and len(self._queue) <= self.query_when_remaining
        if queried:
            chunk = self.executor.query(obs)[: self.executor.execute_steps]
            self._in_flight = (self.t, chunk, self.t + self._delay_steps())
            chunk_start = self._arrive() or chunk_start
        self.t += 1
        if self._queue:
            return self._emit(self._queue.popleft()), StepSource(queried, waiting=False, chunk_start=chunk_start)
        self.waiting_steps += 1
        return self._emit(self._hold(self._last_action)), StepSource(queried, waiting=True)

    def _arrive(self) -> bool:
        """Deliver the in-flight chunk if it is due: drop its actions for steps already past,
        let the rest replace the older plan; whether a new chunk now supplies the actions."""
        if self._in_flight is None or self.t < self._in_flight[2]:
            return False
        query_step, chunk, _ = self._in_flight
        self._in_flight = None
        late = self.t - query_step
        self.stale_actions += min(late, len(chunk))
        if late >= len(chunk):
            return False
        self._queue = deque(chunk[late:])
        return True
