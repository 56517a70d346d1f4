"""Scripted evaluation of policy variants: paired episodes, embodied and inference metrics,
reports, local and Ray scale-out. ``vla-envs eval CONFIG.yaml`` runs it; see
``docs/evaluation.md``.

- ``config``: the YAML schema (``load_eval_config``).
- ``units`` / ``episode``: one episode = one work unit, identical in any process.
- ``latency``: frozen, measured or fixed inference latency in the closed loop.
- ``workers`` / ``ray_backend``: sequential, N local processes, or Ray actors.
- ``parts``: atomic per-episode files (interruption, ``--resume``), consolidated tables.
- ``stats`` / ``summary`` / ``report`` / ``run_info``: what gets written.
"""

from evaluation.config import EvalConfig, load_eval_config
from evaluation.runner import EvalOutcome, run_eval

__all__ = ["EvalConfig", "EvalOutcome", "load_eval_config", "run_eval"]
