"""Scripted evaluation of policy variants: paired episodes, embodied and inference metrics,
reports, local and Ray scale-out. ``vla-envs eval CONFIG.yaml`` runs it; see
``docs/evaluation.md``.

The folders are floors, and imports run downward only (``tests/test_layers.py``):

- ``schema``: the contract, declared once: every table's columns, the summary's, and run.json's
  record (``RunRecord``).
- ``run/``: what runs an episode and what a run writes. ``config`` (the YAML schema,
  ``load_eval_config``), ``plan`` (the work units, and what the driver resolves once for the
  workers), ``episode`` (one episode = one work unit, identical in any process), ``policy_cache``,
  ``latency`` / ``inference`` / ``devices`` (latency in the closed loop), ``teacher_forcing``,
  ``step_hashes``, ``video``, ``parts`` / ``record`` (an episode's files, run.json).
- ``backends/``: where episodes and models run. ``workers`` (this process, N local processes),
  ``ray_backend`` (Ray actors), ``serving`` (the policy servers a run starts).
- ``analysis/``: numbers from finished runs. ``stats`` (paired intervals), ``summary``,
  ``findings``, ``reproducibility`` (where two runs part).
- ``pages/``: what people look at. ``report`` (report.html), ``findings_markdown`` /
  ``findings_figure`` (docs/findings.md).
- ``export/``: recorded episodes out to LeRobot and Minari datasets.
- on top, the commands' work: ``runner`` (``run_eval``: plan, run on a backend, write the
  summary and report) and ``compare`` (rebuild a run's report, compare two runs).

The modules' old paths (``evaluation.config``, ...) still import, with a ``DeprecationWarning``
(``evaluation._moved``).
"""

from evaluation import _moved

_moved.install()

from evaluation.run.config import EvalConfig, load_eval_config  # noqa: E402 - after the finder, as a user's old import would be
from evaluation.runner import EvalOutcome, run_eval  # noqa: E402

__all__ = ["EvalConfig", "EvalOutcome", "load_eval_config", "run_eval"]
