"""Teacher-forced divergence: per-step compression error told apart from closed-loop drift.

A variant's closed-loop episode differs from its reference's for two reasons: its policy maps the
same observation to other actions (per-step error), and those actions lead it to other
observations, where it errs again (drift). Teacher forcing isolates the first: while the
reference runs its episode, every variant compared with it (``compare_to``, default the base) is
queried on the reference's observation at each of the reference's query steps, and the two plans
are compared. Nothing the variant does reaches the simulator.

Per query, with ``r`` the reference's chunk and ``v`` the variant's (rows are actions)::

    n = min(len(r), len(v))
    action_distance       = mean_i<n ||v[i] - r[i]||_2      (the plan)
    first_action_distance = ||v[0] - r[0]||_2               (the action executed next)

both in the action space's units (OSC_POSE: normalised [-1, 1] deltas). An episode's entry is the
mean over its queries. A variant that differs only in execution or latency has the reference's
policy object: it is not asked again (a stateful policy would advance twice), its distances are
0, and all of its closed-loop change is the schedule's.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from policies.base import Policy, check_chunk


def plan_distance(reference: np.ndarray, variant: np.ndarray) -> tuple[float, float]:
    """(mean L2 distance over the overlapping rows, L2 distance of the first rows)."""
    reference, variant = np.asarray(reference, np.float64), np.asarray(variant, np.float64)
    if reference.ndim != 2 or variant.ndim != 2 or reference.shape[1] != variant.shape[1]:
        raise ValueError(f"chunks of shapes {reference.shape} and {variant.shape}: expected (H, action_dim) "
                         "with the same action_dim")
    n = min(len(reference), len(variant))
    if n == 0:
        raise ValueError("an empty chunk: expected at least one action")
    distances = np.linalg.norm(variant[:n] - reference[:n], axis=1)
    return float(distances.mean()), float(distances[0])


@contextmanager
def _isolated_rng():
    """Restore numpy's and torch's global RNGs afterwards: querying a stochastic variant must
    not change the reference's own episode."""
    import torch

    state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            np.random.set_state(state)


class TeacherForcing:
    """Queries ``followers`` on a reference episode's observations; one entry per follower."""

    def __init__(self, followers: dict[str, Policy], reference: Policy):
        self.followers = followers
        self.reference = reference

    def reset(self, instruction: str) -> None:
        self._distances: dict[str, list[tuple[float, float]]] = {name: [] for name in self.followers}
        for policy in self.followers.values():
            if policy is not self.reference:  # a shared policy was reset by the reference's executor
                policy.reset(instruction)

    def observe(self, obs, reference_chunk: np.ndarray) -> None:
        """The reference queried its policy on ``obs`` and got ``reference_chunk``."""
        for name, policy in self.followers.items():
            if policy is self.reference:
                # the same policy object (a variant of other execution or latency): its plan is the
                # reference's; asking again would advance a stateful policy (an expert's phases) twice
                chunk = reference_chunk
            else:
                with _isolated_rng():
                    chunk = check_chunk(policy.act(obs), policy.action_dim, type(policy).__name__)
            self._distances[name].append(plan_distance(reference_chunk, chunk))

    def entries(self) -> list[dict]:
        """``evaluation.schema.TEACHER_FORCED_TYPE`` entries, in the followers' order."""
        out = []
        for name, distances in self._distances.items():
            values = np.asarray(distances, dtype=np.float64).reshape(-1, 2)
            mean = values.mean(axis=0) if len(values) else np.full(2, np.nan)
            out.append({"variant": name, "queries": len(values), "action_distance": float(mean[0]),
                        "first_action_distance": float(mean[1])})
        return out
