"""Plumbing shared by the embodied wrappers: who drives the probe, instability handling."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from wrappers.probe import EmbodiedProbe, find_probe


class EmbodiedWrapper(gym.Wrapper):
    """Base class: the innermost embodied wrapper of a stack owns and drives the shared probe.

    Every embodied wrapper's ``info`` has the same keys on ``reset`` and every ``step``:
    ``info["embodied"]`` (the episode-so-far metrics, ``EmbodiedCost``) and
    ``info["sim_unstable"]``, written once by the owner.

    The owner checks each action before it reaches the simulator (``ValueError`` on a wrong
    shape, NaN or inf), samples the arm after ``reset`` and every ``step``, and turns an unstable
    simulation (MuJoCo instability warnings or a non-finite joint state) into ``truncated=True``
    with ``info["sim_unstable"] = True``. ``info["sim_unstable"]`` is present on every step.
    Stepping after the episode ended (``terminated`` or ``truncated``) raises gymnasium's
    ``ResetNeeded``: the finished episode's numbers and files stay as they were.
    """

    def __init__(
        self,
        env: gym.Env,
        joint_names: list[str] | tuple[str, ...] | None = None,
        ee_site: str | None = None,
        ee_body: str | None = None,
    ):
        super().__init__(env)
        probe = find_probe(env)
        if probe is None:
            self.embodied_probe = EmbodiedProbe(joint_names, ee_site, ee_body)
            self._owns_probe = True
        else:
            probe.check_settings(joint_names, ee_site, ee_body)
            self.embodied_probe = probe
            self._owns_probe = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        if self._owns_probe:
            self.embodied_probe.after_reset(self.env, seed)
            info["embodied"] = self.embodied_probe.values()
            info["sim_unstable"] = False
        return obs, info

    def step(self, action):
        return self._owner_step(action) if self._owns_probe else self.env.step(action)

    def _owner_step(self, action):
        """``env.step`` with the probe driven around it (the innermost embodied wrapper only).

        Subclasses call this or ``self.env.step`` directly rather than ``super().step``: the
        wrappers run on every step of cheap simulators, where each extra frame shows.
        """
        probe = self.embodied_probe
        if probe.episode_over:
            raise gym.error.ResetNeeded(
                "env.step() after the episode ended (terminated or truncated): call env.reset() first; "
                "the finished episode's metrics and files are kept as they were"
            )
        action = probe.before_step(action)
        obs, reward, terminated, truncated, info = self.env.step(action)
        if probe.after_step(reward):
            truncated = True
        probe.episode_over = terminated or truncated
        info["embodied"] = probe.values()
        info["sim_unstable"] = probe.sim_unstable
        return obs, reward, terminated, truncated, info

    def close(self):
        if self._owns_probe:
            self.embodied_probe.close()
        super().close()
