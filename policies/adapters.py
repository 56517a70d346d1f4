"""Adapters that turn external models into ``Policy`` objects.

``ModuleAdapter`` wraps any ``torch.nn.Module`` or callable that maps a preprocessed
observation to actions, with the pre- and post-processing configurable:

    preprocess(obs, instruction) -> model inputs (a tensor, a tuple of args, or a dict of kwargs)
    model(inputs)                -> raw output
    postprocess(raw_output)      -> (H, action_dim) actions in the model's action space
    normalizer.unnormalize(...)  -> env-space actions (optional ``ActionNormalizer``)

Wiring a Hugging Face style VLA (OpenVLA's ``predict_action``), no download involved here:

    processor, vla = ...  # AutoProcessor / AutoModelForVision2Seq loaded by the user
    def preprocess(obs, instruction):
        prompt = f"In: What action should the robot take to {instruction}?\\nOut:"
        return processor(prompt, Image.fromarray(obs["image"]), return_tensors="pt")
    policy = ModuleAdapter(lambda inputs: vla.predict_action(**inputs, unnorm_key="bridge_orig",
                                                               do_sample=False),
                           preprocess=preprocess, action_dim=7, chunk_size=1)

A LeRobot policy needs LeRobot's own environment (Python >= 3.12, numpy >= 2) and its
pre/post-processors: serve it from there with ``policies.serving.lerobot_policy`` and evaluate
it over openpi's protocol (docs/integrations.md), rather than through this adapter.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from policies.base import Policy, check_chunk
from policies.normalization import ActionNormalizer


def default_preprocess(obs: dict, instruction: str):
    """A float32 batch-of-one tensor of ``obs["state"]`` (or ``obs["proprio"]``)."""
    import torch

    key = "state" if "state" in obs else "proprio"
    return torch.as_tensor(np.asarray(obs[key], dtype=np.float32))[None]


def default_postprocess(output) -> np.ndarray:
    """A tensor or array of any leading batch shape -> float32 numpy."""
    if hasattr(output, "detach"):
        output = output.detach().cpu().numpy()
    return np.asarray(output, dtype=np.float32)


class ModuleAdapter(Policy):
    """A ``Policy`` around a torch module or any callable (see the module docstring)."""

    def __init__(
        self,
        model: Callable,
        action_dim: int,
        chunk_size: int = 1,
        preprocess: Callable[[dict, str], Any] = default_preprocess,
        postprocess: Callable[[Any], np.ndarray] = default_postprocess,
        normalizer: ActionNormalizer | None = None,
        reset_hook: Callable[[], None] | None = None,
    ):
        if action_dim < 1 or chunk_size < 1:
            raise ValueError(f"action_dim={action_dim}, chunk_size={chunk_size}: expected both >= 1")
        self.model = model
        self.action_dim = action_dim
        self.chunk_size = chunk_size
        self.preprocess = preprocess
        self.postprocess = postprocess
        self.normalizer = normalizer
        self.reset_hook = reset_hook
        self.instruction = ""

    def torch_module(self):
        import torch

        return self.model if isinstance(self.model, torch.nn.Module) else None  # a plain callable has none

    def reset(self, instruction: str = "") -> None:
        super().reset(instruction)
        if self.reset_hook is not None:
            self.reset_hook()

    def _call(self, inputs):
        if isinstance(inputs, dict):
            return self.model(**inputs) if not _takes_batch_dict(self.model) else self.model(inputs)
        if isinstance(inputs, tuple):
            return self.model(*inputs)
        return self.model(inputs)

    def act(self, obs) -> np.ndarray:
        import torch

        with torch.no_grad():
            raw = self._call(self.preprocess(obs, self.instruction))
        actions = self.postprocess(raw).reshape(-1, self.action_dim)
        if self.normalizer is not None:
            actions = self.normalizer.unnormalize(actions)
        return check_chunk(actions, self.action_dim, type(self).__name__)


def _takes_batch_dict(model) -> bool:
    """LeRobot-style callables take the batch dict itself; torch modules take keyword tensors."""
    import torch

    return not isinstance(model, torch.nn.Module)
