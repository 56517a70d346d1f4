"""LIBERO (the benchmark public VLAs report) on this project's stack.

- ``installation``: LIBERO and its assets found and prepared without writes outside the
  project's cache (``pip install -e ".[libero]"``).
- ``suites``: the suites, their tasks in LIBERO's order, time limits and standard initial states.
- ``env``: ``LiberoEnv``, a task behind ``gym.make("vla_envs/LIBERO-Spatial-v0", task_id=k)``.
- ``check_all``: every task built, reset to each standard initial state and stepped.

Importing this package imports nothing of LIBERO; ``installation.prepare()`` does, once.
"""
