"""TinyVLA, the suite's reference vision-language-action model (trained here, shipped as safetensors)."""

from policies.tinyvla.model import TinyVLA, TinyVLAConfig
from policies.tinyvla.policy import TinyVLAPolicy, load_reference

__all__ = ["TinyVLA", "TinyVLAConfig", "TinyVLAPolicy", "load_reference"]
