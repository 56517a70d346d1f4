"""Turn action chunks into one action per control step.

Two schedules:

- ``open_loop`` (execute k then re-plan): query the policy, execute the first ``execute_steps``
  actions of the chunk without looking at observations, query again. ``execute_steps = H``
  is the usual chunked execution; 1 re-plans every step.
- ``temporal_ensemble`` (ACT, Zhao et al. 2023): query the policy every step; the action at
  step t averages every stored chunk's prediction for t with weights w_i = exp(-m * i), where
  i = 0 is the oldest prediction (ACT's convention: older predictions weigh more for m > 0).
  ``ensemble_coefficient`` is m (ACT uses 0.01).

``inference_calls`` counts policy queries, the quantity a slower or faster model trades against.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

import numpy as np

from policies.base import Policy, check_chunk

Schedule = Literal["open_loop", "temporal_ensemble"]


class ChunkExecutor:
    """Executes a ``Policy``'s chunks step by step."""

    def __init__(
        self,
        policy: Policy,
        schedule: Schedule = "open_loop",
        execute_steps: int | None = None,
        ensemble_coefficient: float = 0.01,
    ):
        if schedule not in ("open_loop", "temporal_ensemble"):
            raise ValueError(f"schedule={schedule!r}: expected 'open_loop' or 'temporal_ensemble'")
        chunk_size = int(policy.chunk_size)
        execute_steps = chunk_size if execute_steps is None else int(execute_steps)
        if schedule == "open_loop" and not 1 <= execute_steps <= chunk_size:
            raise ValueError(f"execute_steps={execute_steps}: expected 1..{chunk_size} (the policy's chunk size)")
        if ensemble_coefficient < 0:
            raise ValueError(f"ensemble_coefficient={ensemble_coefficient}: expected >= 0")
        self.policy = policy
        self.schedule = schedule
        self.execute_steps = execute_steps
        self.ensemble_coefficient = float(ensemble_coefficient)
        self.reset()

    def reset(self, instruction: str = "") -> None:
        self.policy.reset(instruction)
        self.inference_calls = 0
        self.t = 0
        self._queue: deque[np.ndarray] = deque()
        self._chunks: list[tuple[int, np.ndarray]] = []  # (start step, chunk), oldest first

    @property
    def needs_query(self) -> bool:
        """Whether the next ``step`` queries the policy (latency models need to know)."""
        return self.schedule == "temporal_ensemble" or not self._queue

    def query(self, obs) -> np.ndarray:
        """One policy query: its chunk, shape-checked (shape (H, action_dim)); counted in
        ``inference_calls``. ``step`` calls it when the schedule re-plans; an asynchronous
        scheduler calls it directly."""
        self.inference_calls += 1
        return check_chunk(self.policy.act(obs), self.policy.action_dim, type(self.policy).__name__)

    def step(self, obs) -> np.ndarray:
        """The action for the current control step (shape (action_dim,))."""
        if self.schedule == "open_loop":
            if not self._queue:
                chunk = self.query(obs)
                self._queue.extend(chunk[: self.execute_steps])
            action = self._queue.popleft()
        else:
            self._chunks.append((self.t, self.query(obs)))
            # keep only chunks that still cover this step
            self._chunks = [(s, c) for s, c in self._chunks if s + len(c) > self.t]
            predictions = np.stack([c[self.t - s] for s, c in self._chunks])
            weights = np.exp(-self.ensemble_coefficient * np.arange(len(predictions)))
            action = (weights[:, None] * predictions).sum(axis=0) / weights.sum()
        self.t += 1
        return np.asarray(action, dtype=np.float32)
