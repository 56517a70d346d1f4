"""Gymnasium wrappers that record joint state and torques and report embodied cost.

- ``EmbodiedCost``: the running embodied metrics of the episode in ``info["embodied"]``.
- ``JointStateRecorder``: per-step (and per-substep) arrays of each episode; Parquet files.
- ``EfficiencyReward``: task reward minus weighted per-step costs, plus a success bonus.

Stack them in any order: they share one measurement probe per environment.
``wrappers.sb3_callback.EmbodiedMetricsCallback`` logs each episode's metrics to SB3's logger;
``make_embodied_env`` is the env for SB3's ``make_vec_env`` with a Monitor recording them.
"""

from wrappers.efficiency_reward import EfficiencyReward, RewardConfig, load_reward_config
from wrappers.embodied_cost import MONITOR_KEYWORDS, EmbodiedCost, flat_metrics, make_embodied_env
from wrappers.episode_buffer import EpisodeArrays
from wrappers.joint_state_recorder import JointStateRecorder
from wrappers.metrics import LEDGER_KEYS, METRIC_KEYS, actuator_ledger, episode_metrics
from wrappers.parquet_io import read_episode, write_episode
from wrappers.robot_readout import RobotNotFoundError, RobotReadout, read_robot

__all__ = [
    "LEDGER_KEYS",
    "METRIC_KEYS",
    "MONITOR_KEYWORDS",
    "EfficiencyReward",
    "EmbodiedCost",
    "EpisodeArrays",
    "JointStateRecorder",
    "RewardConfig",
    "RobotNotFoundError",
    "RobotReadout",
    "actuator_ledger",
    "episode_metrics",
    "flat_metrics",
    "load_reward_config",
    "make_embodied_env",
    "read_episode",
    "read_robot",
    "write_episode",
]
