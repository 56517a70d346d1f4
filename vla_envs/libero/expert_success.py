"""Old path of ``policies.libero_expert_success`` (the scripted expert's success on LIBERO; it
measures a policy, so it lives with the policies and ``vla_envs`` imports nothing above it).
Imports and ``python -m vla_envs.libero.expert_success`` keep working for one release, with a
``DeprecationWarning``."""

from __future__ import annotations

import warnings

_MESSAGE = ("vla_envs.libero.expert_success moved to policies.libero_expert_success; the old path works until the "
            "release after 0.6")


def __getattr__(name: str):
    # resolved on first use, so importing vla_envs imports nothing above it
    warnings.warn(_MESSAGE, DeprecationWarning, stacklevel=2)
    import policies.libero_expert_success

    return getattr(policies.libero_expert_success, name)


if __name__ == "__main__":
    warnings.warn(_MESSAGE, DeprecationWarning, stacklevel=1)
    from policies.libero_expert_success import main

    main()
