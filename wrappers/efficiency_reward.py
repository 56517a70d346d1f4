"""``EfficiencyReward``: task reward minus weighted per-step embodied costs, plus a success bonus."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gymnasium as gym
from pydantic import ConfigDict, Field, field_validator

from vla_envs.strict_config import StrictConfig
from wrappers.base import EmbodiedWrapper
from wrappers.accounting import dict_builder
from wrappers.metrics import STEP_TERM_KEYS


class RewardConfig(StrictConfig):
    """Weights and normalisation scales per cost term (keys: ``STEP_TERM_KEYS``).

    Each step: ``reward = task_reward + success_bonus * [first success step]
    - sum_k weights[k] * term_k / scales[k]``, where term_k is that step's summand of cost k.
    """

    model_config = ConfigDict(strict=False)  # values from code: numpy numbers are numbers

    weights: dict[str, float] = Field(default_factory=dict)
    scales: dict[str, float] = Field(default_factory=dict)
    success_bonus: float = Field(0.0, ge=0.0, allow_inf_nan=False)

    @field_validator("weights", "scales")
    @classmethod
    def _known_terms(cls, value: dict[str, float], info) -> dict[str, float]:
        for key, number in value.items():
            if key not in STEP_TERM_KEYS:
                raise ValueError(f"unknown cost term {key!r}: expected one of {list(STEP_TERM_KEYS)}")
            if not math.isfinite(number):  # NaN or inf would make every reward NaN or -inf
                raise ValueError(f"{info.field_name[:-1]} of {key!r} is {number}: expected a finite number")
            if info.field_name == "weights" and number < 0:
                raise ValueError(f"weight of {key!r} is {number}: expected >= 0 (a cost, not a bonus)")
            if info.field_name == "scales" and number <= 0:
                raise ValueError(f"scale of {key!r} is {number}: expected > 0")
        return value


# info["reward_terms"]: each weighted cost term, then the success bonus
REWARD_TERM_KEYS: tuple[str, ...] = (*STEP_TERM_KEYS, "success_bonus")
_reward_terms_dict = dict_builder(REWARD_TERM_KEYS)


def load_reward_config(path: str | Path) -> RewardConfig:
    """Load ``configs/rewards/*.yaml``; errors name the file, field and value."""
    from vla_envs.config import load_config

    return load_config(path, RewardConfig)


def default_reward_config() -> RewardConfig:
    from vla_envs.config import shipped_config_dir

    return load_reward_config(shipped_config_dir() / "rewards" / "default.yaml")


class EfficiencyReward(EmbodiedWrapper, gym.utils.RecordConstructorArgs):
    """Shapes the reward with the per-step increments of the embodied cost terms.

    Cost terms (per control step, see ``docs/metrics.md``): ``time_s`` (1/f), ``ee_path_m``,
    ``joint_path_rad``, ``joint_rotation_rad``, ``jerk_sq`` (f^4 ||second difference of qd||^2),
    ``action_change`` (||a_t - a_{t-1}||), ``energy_j``, ``effort_nm2s``. A term without a weight
    costs nothing; a term without a scale is divided by 1.

    With the default config (``configs/rewards/default.yaml``), standing still never beats
    solving: time costs the same per step whatever the robot does, so waiting out the time limit
    pays the most time cost, and the success bonus is paid once, on the first success step.

    ``info`` layout on every step (0.0 entries at reset)::

        info["task_reward"] = <the wrapped env's reward>
        info["reward_terms"] = {"time_s": -w*term/scale, ..., "success_bonus": bonus or 0.0}

    Args:
        env: the environment.
        config: a ``RewardConfig``, a dict with its fields, or a YAML path; default: the shipped
            default config.
        weights, scales, success_bonus: override those fields of ``config``.
        joint_names, ee_site, ee_body: as for ``EmbodiedCost``.
    """

    def __init__(
        self,
        env: gym.Env,
        config: RewardConfig | dict[str, Any] | str | Path | None = None,
        weights: dict[str, float] | None = None,
        scales: dict[str, float] | None = None,
        success_bonus: float | None = None,
        joint_names: list[str] | tuple[str, ...] | None = None,
        ee_site: str | None = None,
        ee_body: str | None = None,
    ):
        gym.utils.RecordConstructorArgs.__init__(
            self,
            config=str(config) if isinstance(config, Path) else config,
            weights=weights,
            scales=scales,
            success_bonus=success_bonus,
            joint_names=joint_names,
            ee_site=ee_site,
            ee_body=ee_body,
        )
        EmbodiedWrapper.__init__(self, env, joint_names, ee_site, ee_body)
        if config is None:
            cfg = default_reward_config()
        elif isinstance(config, RewardConfig):
            cfg = config
        elif isinstance(config, dict):
            cfg = RewardConfig.model_validate(config)
        else:
            cfg = load_reward_config(config)
        overrides = {
            key: value
            for key, value in (("weights", weights), ("scales", scales), ("success_bonus", success_bonus))
            if value is not None
        }
        self.config = RewardConfig.model_validate({**cfg.model_dump(), **overrides}) if overrides else cfg
        probe = self.embodied_probe
        if probe.penalty_coefficients.any():
            raise ValueError("this env already has an EfficiencyReward: stack at most one")
        # -weight / scale per term (STEP_TERM_KEYS order): the probe's accounting applies them each step
        probe.penalty_coefficients[:] = [
            -self.config.weights.get(key, 0.0) / self.config.scales.get(key, 1.0) for key in STEP_TERM_KEYS
        ]
        self._succeeded = False

    def _zero_terms(self) -> dict[str, float]:
        return dict.fromkeys(REWARD_TERM_KEYS, 0.0)

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        self._succeeded = False
        info["task_reward"] = 0.0
        info["reward_terms"] = self._zero_terms()
        return obs, info

    def step(self, action):
        obs, task_reward, terminated, truncated, info = (
            self._owner_step(action) if self._owns_probe else self.env.step(action)
        )
        p = self.embodied_probe.penalties()  # STEP_TERM_KEYS order, then their sum
        bonus = 0.0
        if info.get("is_success") and not self._succeeded:
            self._succeeded = True
            bonus = self.config.success_bonus
        task_reward = float(task_reward)
        info["task_reward"] = task_reward
        reward = task_reward + p[-1] + bonus
        p[-1] = bonus  # the weighted terms, then the bonus: REWARD_TERM_KEYS
        info["reward_terms"] = _reward_terms_dict(p)
        return obs, reward, terminated, truncated, info
