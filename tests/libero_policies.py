"""A deterministic policy for the LIBERO convention tests: its actions depend on every entry of
the observation map it is given (each image's pixels, the state), so a served copy and an
in-process copy act alike only if they see the same observations."""

from __future__ import annotations

import numpy as np

from policies.base import Policy
from policies.conventions import convention


class ObservationEcho(Policy):
    """Small arm motions that are a fixed function of the observation map's values."""

    action_dim = 7
    chunk_size = 8

    def act(self, obs) -> np.ndarray:
        features = []
        for key in sorted(obs):
            value = np.asarray(obs[key], dtype=np.float64)
            features += [value.mean(), value.std(), value.ravel()[:: max(1, value.size // 7)][:7].sum()]
        phase = float(np.sum(np.sin(np.arange(1, len(features) + 1) * np.asarray(features))))
        steps = np.arange(self.chunk_size)[:, None]
        arm = 0.3 * np.sin(phase + 0.7 * steps + np.arange(6)[None])
        gripper = np.where(np.cos(phase + steps) > 0, 1.0, -1.0)
        return np.concatenate([arm, gripper], axis=1).astype(np.float32)


class ConventionPolicy(Policy):
    """``policy`` fed the observations as ``convention_name``'s client builds them, in process."""

    def __init__(self, policy: Policy, convention_name: str):
        self.policy, self.convention = policy, convention(convention_name)
        self.action_dim, self.chunk_size = policy.action_dim, policy.chunk_size

    def reset(self, instruction: str = "") -> None:
        super().reset(instruction)
        self.policy.reset(instruction)

    def act(self, obs) -> np.ndarray:
        return self.policy.act(self.convention.convert(obs))


def in_process(convention_name: str = "openpi_libero") -> Policy:
    return ConventionPolicy(ObservationEcho(), convention_name)
