"""``ResidualActionEnv``: a frozen base policy turned into an env whose action is a correction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from policies.base import Policy
from policies.chunk_executor import ChunkExecutor
from policies.residual import broadcast_scale, compose_action, residual_features


class ResidualActionEnv(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """The agent corrects a frozen base policy; the env executes ``base + scale * residual``.

    Each step the base policy's ``ChunkExecutor`` gives ``base_t`` for the current observation
    (querying the policy when its chunk runs out), and the wrapped env executes::

        action_t = clip(base_t + scale * clip(residual_t, -1, 1), low, high)

    (``policies.residual.compose_action``). The agent sees a flat float32 vector: the named
    observation entries, then ``base_t`` when ``include_base_action``. Put reward shaping
    (``EfficiencyReward``) and measurement inside this wrapper, so they see the action the
    simulator applies.

    Spaces: ``action_space = Box(-1, 1, (action_dim,))``; ``observation_space = Box(-inf, inf,
    (features,))``.

    ``info`` on ``reset`` and every ``step`` (plus the wrapped env's keys)::

        info["base_action"]      = base_t for the step the returned observation starts (float32)
        info["residual_action"]  = the bounded residual this step applied (zeros at reset)
        info["executed_action"]  = the action the wrapped env received (zeros at reset)

    Args:
        env: the environment (dict observations).
        base_policy: the frozen base ``Policy``, or a callable ``env -> Policy`` (built once, on
            the unwrapped env; experts read privileged state through it).
        scale: the largest correction per action dimension (a number or one per dimension; 0
            keeps that dimension the base's).
        obs_keys: observation entries the agent sees.
        include_base_action: append the base action to the agent's observation.
        execution: ``ChunkExecutor`` keyword arguments for the base (schedule, execute_steps, ...).
    """

    def __init__(
        self,
        env: gym.Env,
        base_policy: Policy | Any,
        scale: float | Sequence[float] = 0.5,
        obs_keys: Sequence[str] = ("state",),
        include_base_action: bool = True,
        execution: dict[str, Any] | None = None,
    ):
        gym.utils.RecordConstructorArgs.__init__(
            self, base_policy=base_policy, scale=scale, obs_keys=tuple(obs_keys),
            include_base_action=include_base_action, execution=execution,
        )
        gym.Wrapper.__init__(self, env)
        base_space = env.action_space
        if not isinstance(base_space, spaces.Box) or len(base_space.shape) != 1:
            raise ValueError(f"ResidualActionEnv needs a 1-D Box action space, got {base_space}")
        if not isinstance(env.observation_space, spaces.Dict):
            raise ValueError(f"ResidualActionEnv needs dict observations, got {env.observation_space}")
        missing = [key for key in obs_keys if key not in env.observation_space.spaces]
        if missing:
            raise ValueError(
                f"obs_keys {missing} are not in the env's observations {sorted(env.observation_space.spaces)}"
            )
        policy = base_policy if isinstance(base_policy, Policy) else base_policy(env)
        action_dim = base_space.shape[0]
        if int(policy.action_dim) != action_dim:
            raise ValueError(f"the base policy's actions have {policy.action_dim} numbers, the env's {action_dim}")
        self.base_policy = policy
        self.executor = ChunkExecutor(policy, **(execution or {}))
        self.scale = broadcast_scale(scale, action_dim)
        self.obs_keys = tuple(obs_keys)
        self.include_base_action = bool(include_base_action)
        self.base_action_space = base_space  # the wrapped env's: executed actions are clipped to it
        self._low = base_space.low.astype(np.float64)
        self._high = base_space.high.astype(np.float64)
        features = sum(int(np.prod(env.observation_space.spaces[k].shape)) for k in obs_keys)
        features += action_dim if include_base_action else 0
        self.observation_space = spaces.Box(-np.inf, np.inf, (features,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (action_dim,), np.float32)
        self._base_action: np.ndarray | None = None

    def _observe(self, obs) -> np.ndarray:
        return residual_features(obs, self.obs_keys, self._base_action if self.include_base_action else None)

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        self.executor.reset(info.get("instruction", ""))
        self._base_action = self.executor.step(obs)
        zeros = np.zeros(self.action_space.shape, np.float32)
        info.update(base_action=self._base_action, residual_action=zeros, executed_action=zeros)
        return self._observe(obs), info

    def step(self, action):
        if self._base_action is None:
            raise gym.error.ResetNeeded("ResidualActionEnv: call reset() before step()")
        residual = np.asarray(action, dtype=np.float64)
        if residual.shape != self.action_space.shape:
            raise ValueError(f"residual action has shape {residual.shape}, expected {self.action_space.shape}")
        if not np.isfinite(residual).all():
            raise ValueError(f"residual action {residual.tolist()} is not finite")
        bounded = np.clip(residual, -1.0, 1.0).astype(np.float32)
        executed = compose_action(self._base_action, residual, self.scale, self._low, self._high)
        obs, reward, terminated, truncated, info = self.env.step(executed)
        applied_base = self._base_action
        if terminated or truncated:
            self._base_action = None  # the episode is over: no base query for a state nobody acts in
            next_base = applied_base
        else:
            self._base_action = next_base = self.executor.step(obs)
        info.update(base_action=next_base, residual_action=bounded, executed_action=executed)
        features = residual_features(obs, self.obs_keys, next_base if self.include_base_action else None)
        return features, reward, terminated, truncated, info
