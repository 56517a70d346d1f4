"""``EmbodiedMetricsCallback``: each finished episode's embodied metrics in SB3's logger."""

from __future__ import annotations

import math

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from wrappers.metrics import METRIC_KEYS


class EmbodiedMetricsCallback(BaseCallback):
    """Logs, for every episode that ends, its embodied metrics (``info["embodied"]`` on the last
    step) and, under ``EfficiencyReward``, the episode's sum of each reward term.

    SB3 averages the values of the episodes that ended since its last dump (``record_mean``),
    so each row of ``progress.csv`` (and each TensorBoard point, when TensorBoard is installed
    and configured) gets::

        embodied/completion_time_s, embodied/ee_path_m, ..., embodied/peak_joint_speed_frac
        (a metric that is NaN for the env, e.g. a speed fraction without velocity limits, is left out)
        reward_terms/time_s, ..., reward_terms/success_bonus        # with EfficiencyReward

    Works with any VecEnv whose sub-envs carry an embodied wrapper; sub-envs without one are
    skipped. Example::

        model = PPO("MultiInputPolicy", vec_env)
        model.set_logger(configure("runs/ppo", ["csv", "stdout"]))
        model.learn(100_000, callback=EmbodiedMetricsCallback())
    """

    def __init__(self, verbose: int = 0):
        super().__init__(verbose)
        self._term_sums: list[dict[str, float]] = []

    def _on_training_start(self) -> None:
        self._term_sums = [{} for _ in range(self.training_env.num_envs)]

    def _on_step(self) -> bool:
        infos = self.locals["infos"]
        dones = self.locals["dones"]
        for index, (info, done) in enumerate(zip(infos, np.asarray(dones))):
            sums = self._term_sums[index]
            for key, value in info.get("reward_terms", {}).items():
                sums[key] = sums.get(key, 0.0) + float(value)
            if not done:
                continue
            embodied = info.get("embodied")
            if embodied is not None:
                for key in METRIC_KEYS:
                    value = float(embodied[key])
                    if math.isfinite(value):  # NaN: not defined for this env (no velocity limits, ...)
                        self.logger.record_mean(f"embodied/{key}", value)
            for key, total in sums.items():
                self.logger.record_mean(f"reward_terms/{key}", total)
            sums.clear()
        return True
