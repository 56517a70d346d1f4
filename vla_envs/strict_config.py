"""``StrictConfig``: the one base of every configuration model in the project (task YAMLs, eval
and fine-tuning configs, compression specs, device tables).

Unknown keys are refused (a misspelt key is an error, not a silently ignored setting), a loaded
config cannot be changed (``model_copy(update=...)`` makes another), and values are not coerced:
a quoted ``"20"`` is text, not a frequency. A model whose values come from code rather than YAML
(an ``int`` numpy scalar, say) may relax the last rule with ``model_config = ConfigDict(strict=False)``,
which pydantic merges with this base's settings.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
