"""``EmbodiedCost``: the running embodied cost of the episode in ``info``."""

from __future__ import annotations

import gymnasium as gym

from wrappers.base import EmbodiedWrapper
from wrappers.metrics import METRIC_KEYS

# With ``flat_info=True`` these keys hold the episode-so-far metrics as plain floats, so
# ``stable_baselines3.common.monitor.Monitor(env, info_keywords=MONITOR_KEYWORDS)`` writes one
# numeric CSV column per metric (the nested ``info["embodied"]`` would be one column of dicts).
# The Monitor must sit outside EmbodiedCost: SB3's make_vec_env does that with make_embodied_env.
MONITOR_KEYWORDS: tuple[str, ...] = tuple(f"embodied/{key}" for key in METRIC_KEYS)


class EmbodiedCost(EmbodiedWrapper, gym.utils.RecordConstructorArgs):
    """Adds the episode-so-far embodied metrics to ``info`` after ``reset`` and every ``step``.

    Works on the suite's robosuite tasks and on gymnasium ``MujocoEnv`` arms (``Pusher-v5``,
    ``Reacher-v5``); see ``wrappers.robot_readout`` for how the arm is found, and
    ``docs/metrics.md`` for every formula and unit. Torques and velocities for ``energy_j`` and
    ``effort_nm2s`` are integrated over every physics substep.

    ``info`` layout (the same float keys on every step, 0.0 at reset)::

        info["embodied"] = {
            "completion_time_s": T / f,
            "ee_path_m": sum ||p_{t+1} - p_t||,
            "joint_path_rad": sum ||q_{t+1} - q_t||,
            "joint_rotation_rad": sum_t sum_j |q_{t+1,j} - q_{t,j}|,
            "jerk_ms": f^4 mean ||qd_{t+1} - 2 qd_t + qd_{t-1}||^2,   # rad^2/s^6
            "action_rate": mean ||a_{t+1} - a_t||,
            "energy_j": sum_substeps sum_j |tau_j qd_j| dt,
            "effort_nm2s": sum_substeps sum_j tau_j^2 dt,
            "n_steps": T,
            # the actuator ledger (docs/metrics.md), NaN where the model defines no limit
            "positive_work_j": sum max(tau qd, 0) dt, "negative_work_j": sum min(tau qd, 0) dt,
            "peak_torque_frac": max |tau| / limit, "torque_saturation_frac": share >= 98 % of limit,
            "peak_joint_speed_frac": max |qd| / velocity limit,
        }
        info["sim_unstable"] = False   # True (with truncated=True) if the simulation blew up
        # with flat_info=True, also one float per metric (MONITOR_KEYWORDS):
        info["embodied/completion_time_s"], ..., info["embodied/n_steps"]

    The same keys are in ``info`` after ``reset`` and every ``step``; every embodied wrapper
    (``JointStateRecorder``, ``EfficiencyReward``) adds ``info["embodied"]`` too.

    Example::

        >>> env = EmbodiedCost(gym.make("vla_envs/Lift-v0"))
        >>> obs, info = env.reset(seed=0)
        >>> obs, r, terminated, truncated, info = env.step(env.action_space.sample())
        >>> info["embodied"]["energy_j"]

    Args:
        env: the environment.
        joint_names: arm joints to measure (default: the robot's arm / the actuated joints).
        ee_site, ee_body: end-effector site or body (default: robosuite's grip site / the last
            body of the arm chain).
        flat_info: also put each metric under its own ``"embodied/<key>"`` info key.
    """

    def __init__(
        self,
        env: gym.Env,
        joint_names: list[str] | tuple[str, ...] | None = None,
        ee_site: str | None = None,
        ee_body: str | None = None,
        flat_info: bool = False,
    ):
        _refuse_a_monitor_below(env)
        gym.utils.RecordConstructorArgs.__init__(
            self, joint_names=joint_names, ee_site=ee_site, ee_body=ee_body, flat_info=flat_info
        )
        EmbodiedWrapper.__init__(self, env, joint_names, ee_site, ee_body)
        self.flat_info = flat_info

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        if self.flat_info:
            info.update(flat_metrics(info["embodied"]))
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = (
            self._owner_step(action) if self._owns_probe else self.env.step(action)
        )
        if self.flat_info:
            info.update(flat_metrics(info["embodied"]))
        return obs, reward, terminated, truncated, info


def flat_metrics(embodied: dict[str, float]) -> dict[str, float]:
    """``{"embodied/energy_j": ..., ...}``: one numeric key per metric (``MONITOR_KEYWORDS``)."""
    return {flat: embodied[key] for flat, key in zip(MONITOR_KEYWORDS, METRIC_KEYS)}


def make_embodied_env(
    env_id: str,
    joint_names: list[str] | tuple[str, ...] | None = None,
    ee_site: str | None = None,
    ee_body: str | None = None,
    **make_kwargs,
) -> gym.Env:
    """``EmbodiedCost(gym.make(env_id, **make_kwargs), ..., flat_info=True)``: an env for SB3's
    ``make_vec_env``, which puts its ``Monitor`` around what the env callable returns::

        vec_env = make_vec_env(make_embodied_env, n_envs=4,
                               env_kwargs={"env_id": "vla_envs/Lift-v0", "max_episode_steps": 200},
                               monitor_kwargs={"info_keywords": MONITOR_KEYWORDS})

    (``wrapper_class=EmbodiedCost`` cannot work: ``make_vec_env`` applies it outside the Monitor,
    which then looks for the metrics in an env that has none.)
    """
    return EmbodiedCost(gym.make(env_id, **make_kwargs), joint_names, ee_site, ee_body, flat_info=True)


def _refuse_a_monitor_below(env: gym.Env) -> None:
    """A Monitor below this wrapper reads its ``info_keywords`` where the metrics are not: it would
    raise a bare ``KeyError: 'embodied/...'`` at the first episode end (SB3's ``make_vec_env``
    applies ``wrapper_class`` outside its Monitor). Refuse at construction, saying what works."""
    layer = env
    while isinstance(layer, gym.Wrapper):
        wanted = [key for key in getattr(layer, "info_keywords", ()) if key in MONITOR_KEYWORDS]
        if wanted:
            raise ValueError(
                f"EmbodiedCost is applied over a {type(layer).__name__} with info_keywords={wanted!r}, which reads "
                "them from the env below it, where they do not exist (stable_baselines3's make_vec_env applies "
                "wrapper_class after its Monitor). Expected the Monitor outside EmbodiedCost(env, flat_info=True): "
                "make_vec_env(wrappers.make_embodied_env, env_kwargs={'env_id': ...}, "
                "monitor_kwargs={'info_keywords': MONITOR_KEYWORDS}) (docs/metrics.md)"
            )
        layer = layer.env
