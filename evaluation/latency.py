"""Latency-aware chunk execution: does a faster model finish the task sooner?

Three latency models (``docs/evaluation.md`` has a worked example):

- ``frozen``: simulated time stops while the policy computes (every benchmark's convention).
- ``measured``: each policy query takes its measured wall-clock time ``t_inf``; meanwhile the
  simulation runs ``round(t_inf * control_freq)`` control steps (half up) executing the
  previous chunk's not-yet-executed actions; once none is left, the robot does what
  ``execution.on_empty`` says: ``hold_position`` (the default: an arm command of no motion,
  the gripper as last commanded; ``vla_envs.controllers.hold_position_action``) or
  ``repeat_last`` (the last action again, which under a delta controller keeps the arm moving).
  The new chunk then starts from its first action (the plan for the observation it saw).
- ``{fixed_ms: X}``: the same with ``t_inf = X`` ms (a target device); deterministic.
- ``profiled``: the same with ``t_inf`` = the variant's median latency per call from
  ``profile()`` on this machine, measured once before the episodes and recorded in run.json;
  deterministic from then on (a resumed run reuses the recorded values).

The episode clock starts when the first chunk is ready: the first query of an episode costs no
simulated time (before it the robot has no action to hold).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from evaluation.config import FixedLatency, LatencySpec
from policies.chunk_executor import ChunkExecutor


def delay_steps(inference_s: float, control_freq_hz: float) -> int:
    """Control steps that pass during an inference of ``inference_s`` seconds (rounded half up)."""
    if inference_s < 0 or control_freq_hz <= 0:
        raise ValueError(f"inference_s={inference_s}, control_freq_hz={control_freq_hz}: expected >= 0 and > 0")
    return int(math.floor(inference_s * control_freq_hz + 0.5))


def latency_label(latency: LatencySpec, profiled_ms: float | None = None) -> str:
    """``frozen``, ``measured``, ``fixed_50ms`` or ``profiled_3.62ms``: for tables."""
    if isinstance(latency, FixedLatency):
        return f"fixed_{latency.fixed_ms:g}ms"
    if latency == "profiled" and profiled_ms is not None:
        return f"profiled_{profiled_ms:.3g}ms"
    return str(latency)


class TimedChunkExecutor(ChunkExecutor):
    """A ``ChunkExecutor`` that times every policy query and keeps the last chunk."""

    def reset(self, instruction: str = "") -> None:
        super().reset(instruction)
        self.latencies_s: list[float] = []
        self.last_chunk: np.ndarray | None = None

    def _query(self, obs) -> np.ndarray:
        start = time.perf_counter()
        chunk = super()._query(obs)
        self.latencies_s.append(time.perf_counter() - start)
        self.last_chunk = chunk
        return chunk


@dataclass(frozen=True)
class StepSource:
    """Where a control step's action came from."""

    queried: bool  # the policy was queried on this step's observation
    waiting: bool  # a filler action executed while an inference was in flight


def chunk_starts(sources: list[tuple[bool, bool]]) -> np.ndarray:
    """Per recorded row (row 0 is the reset), whether that step executed the first action of a
    new chunk, the episode's first chunk excepted: the chunk seams. ``sources`` holds each row's
    (queried, waiting). Without a wait a chunk starts on the step that queried it; after a wait,
    on the first step that is not waiting."""
    starts = np.zeros(len(sources), dtype=bool)
    seen_first = False
    for row in range(1, len(sources)):
        queried, waiting = sources[row]
        arrived = (queried and not waiting) or (not waiting and sources[row - 1][1])
        if arrived:
            starts[row] = seen_first
            seen_first = True
    return starts


class LatencyAwareExecutor:
    """Turns a ``TimedChunkExecutor`` into one action per control step under a latency model."""

    def __init__(self, executor: TimedChunkExecutor, latency: LatencySpec, control_freq_hz: float,
                 hold_action: Callable[[np.ndarray], np.ndarray] | None = None, profiled_ms: float | None = None):
        """``hold_action(last_action)``: what to execute while waiting once the previous chunk is
        used up; ``None`` repeats the last action. ``profiled_ms``: the latency ``profiled`` applies."""
        if latency not in ("frozen", "measured", "profiled") and not isinstance(latency, FixedLatency):
            raise ValueError(f"latency={latency!r}: expected 'frozen', 'measured', 'profiled' or {{fixed_ms: X}}")
        if latency == "profiled" and (profiled_ms is None or not math.isfinite(profiled_ms) or profiled_ms < 0):
            raise ValueError(f"latency 'profiled' needs the profiled latency in ms, got {profiled_ms!r}")
        self.profiled_ms = profiled_ms
        self.hold_action = hold_action
        self.executor = executor
        self.latency = latency
        self.control_freq_hz = float(control_freq_hz)
        self.reset()

    def reset(self, instruction: str = "") -> None:
        self.executor.reset(instruction)
        self._filler: deque[np.ndarray] = deque()
        self._deferred: np.ndarray | None = None
        self._last_action: np.ndarray | None = None
        self.waiting_steps = 0  # control steps spent waiting for inference, this episode

    @property
    def inference_calls(self) -> int:
        return self.executor.inference_calls

    @property
    def latencies_s(self) -> list[float]:
        return self.executor.latencies_s

    def _inference_s(self) -> float:
        if isinstance(self.latency, FixedLatency):
            return self.latency.fixed_ms / 1e3
        if self.latency == "profiled":
            return self.profiled_ms / 1e3
        return self.executor.latencies_s[-1]

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
            return self._emit(action), StepSource(queried=False, waiting=False)
        previous = self.executor.last_chunk
        queried = self.executor.needs_query
        action = self.executor.step(obs)
        first_query = queried and self.executor.inference_calls == 1
        if not queried or self.latency == "frozen" or first_query:
            return self._emit(action), StepSource(queried=queried, waiting=False)
        n_wait = delay_steps(self._inference_s(), self.control_freq_hz)
        if n_wait == 0:
            return self._emit(action), StepSource(queried=True, waiting=False)
        filler = self._leftover(previous)[:n_wait]
        last = filler[-1] if filler else self._last_action
        hold = last if self.hold_action is None else self.hold_action(last)
        filler += [hold] * (n_wait - len(filler))
        self._deferred = action
        self._filler = deque(filler[1:])
        self.waiting_steps += 1
        return self._emit(filler[0]), StepSource(queried=True, waiting=True)

    def _emit(self, action: np.ndarray) -> np.ndarray:
        self._last_action = np.asarray(action, dtype=np.float32)
        return self._last_action
