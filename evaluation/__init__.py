"""Scripted evaluation of policy variants: paired episodes, embodied and inference metrics,
reports, local and Ray scale-out. ``vla-envs eval CONFIG.yaml`` runs it; see
``docs/evaluation.md``.

- ``schema``: the contract, declared once: every table's columns and the summary's.
- ``run/``: running a config. ``config`` (the YAML schema, ``load_eval_config``), ``units`` and
  ``episode`` (one episode = one work unit, identical in any process), ``policy_cache``,
  ``plan`` (what the driver resolves once for the workers), ``latency`` / ``inference`` /
  ``devices`` (latency in the closed loop), ``parts`` / ``run_info`` / ``runner`` (what a run
  writes, resumably).
- ``backends/``: where episodes and models run. ``workers`` (this process, N local processes),
  ``ray_backend`` (Ray actors), ``serving`` (the policy servers a run starts).
- ``analysis/``: numbers from finished runs. ``stats`` (paired intervals), ``summary``,
  ``findings``, ``compare`` / ``reproducibility`` / ``divergence``.
- ``pages/``: what people look at. ``report`` (report.html), ``findings_markdown`` /
  ``findings_figure`` (docs/findings.md), ``video``.
- ``export/``: recorded episodes out to LeRobot and Minari datasets.

The modules' old paths (``evaluation.config``, ...) still import, with a ``DeprecationWarning``
(``evaluation._moved``).
"""

from evaluation import _moved

_moved.install()

from evaluation.run.config import EvalConfig, load_eval_config  # noqa: E402 - after the finder, as a user's old import would be
from evaluation.run.runner import EvalOutcome, run_eval  # noqa: E402

__all__ = ["EvalConfig", "EvalOutcome", "load_eval_config", "run_eval"]
