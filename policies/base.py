"""The policy interface: an instruction at reset, an action chunk per observation."""

from __future__ import annotations

import abc
import copy

import numpy as np


# per-episode event counts a policy reports (Policy.episode_counters), declared once: the
# evaluation's episode rows and summary columns derive from this
EPISODE_COUNTERS: tuple[str, ...] = (
    "decode_failures",  # action-token sequences that did not decode (FAST)
    "reused_image_tokens",  # image tokens whose cached keys/values stood in for a recomputation (VLA-Cache)
    "flops_saved",  # FLOPs those reuses spared, against full calls (torch's FLOP counter)
)


class Policy(abc.ABC):
    """A policy maps an observation to a chunk of ``chunk_size`` actions, shape (H, action_dim).

    Single-step policies have ``chunk_size == 1``. ``reset`` starts an episode with its
    natural-language instruction (``info["instruction"]`` from the env's ``reset``).
    """

    action_dim: int
    chunk_size: int = 1
    instruction: str = ""  # the current episode's, set by reset

    def reset(self, instruction: str = "") -> None:
        self.instruction = instruction

    def torch_module(self):
        """The ``torch.nn.Module`` this policy computes with, which ``profile()`` counts (params,
        FLOPs, weight memory) and weight compression transforms; ``None`` (the default) for
        policies without one (scripted experts, remote clients, plain callables), which are
        timed but reported without model metrics."""
        return None

    def episode_counters(self) -> dict[str, int]:
        """Events this policy counted since its last ``reset``, keyed by ``EPISODE_COUNTERS``
        (``decode_failures``: action-token sequences that did not decode, FAST's; the token
        cache's ``reused_image_tokens`` and ``flops_saved``). Every
        policy has them, zero unless it counts them; the evaluation writes them per episode."""
        return dict.fromkeys(EPISODE_COUNTERS, 0)

    def fork(self) -> Policy:
        """A policy for another concurrent episode (a policy server's session): the same
        behaviour with its own instruction and per-episode state. The default deep-copies the
        policy; a policy whose weights are large and read-only can override it to share them."""
        return copy.deepcopy(self)

    @abc.abstractmethod
    def act(self, obs) -> np.ndarray:
        """Return an (H, action_dim) float32 array of actions."""


def check_chunk(chunk, action_dim: int, source: str = "policy") -> np.ndarray:
    """Validate a policy output: a finite (H, action_dim) array with H >= 1 (ValueError otherwise)."""
    array = np.asarray(chunk, dtype=np.float32)
    if array.ndim == 1 and array.shape[0] == action_dim:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] != action_dim:
        raise ValueError(f"{source} returned an action chunk of shape {np.shape(chunk)}, expected (H, {action_dim})")
    if not np.isfinite(array).all():
        rows = sorted(set(np.argwhere(~np.isfinite(array))[:, 0].tolist()))
        raise ValueError(f"{source} returned non-finite actions in chunk rows {rows}")
    return array
