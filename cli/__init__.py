"""The ``vla-envs`` command: the top floor, the one place that imports every wing below it
(``vla_envs`` -> ``wrappers`` -> ``policies`` -> ``evaluation`` -> ``finetuning`` -> ``cli``;
``tests/test_layers.py`` checks no import runs back up). ``python -m cli`` runs it too."""
