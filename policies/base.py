"""The policy interface: an instruction at reset, an action chunk per observation."""

from __future__ import annotations

import abc
import copy
from collections.abc import Sequence

import numpy as np

from policies.error_base import VlaEnvsError

# per-episode event counts a policy reports (Policy.episode_counters), declared once: the
# evaluation's episode rows and summary columns derive from this
EPISODE_COUNTERS: tuple[str, ...] = (
    "decode_failures",  # action-token sequences that did not decode (FAST)
    "reused_image_tokens",  # image tokens whose cached keys/values stood in for a recomputation (VLA-Cache)
    "flops_saved",  # FLOPs those reuses spared, against full calls (torch's FLOP counter)
)


class UnsupportedCapability(VlaEnvsError, ValueError):
    """A policy was asked for something it does not declare (a compression it cannot apply)."""


class Policy(abc.ABC):
    """A policy maps an observation to a chunk of ``chunk_size`` actions, shape (H, action_dim).

    Single-step policies have ``chunk_size == 1``. ``reset`` starts an episode with its
    natural-language instruction (``info["instruction"]`` from the env's ``reset``).

    What a policy may offer beyond ``act`` is declared here, with the default of a policy that
    does not offer it, so callers read it instead of probing: ``execute_steps`` (its own open-loop
    steps), ``observation_shapes`` (what a server checks requests against), ``batchable`` /
    ``act_batch``, ``episode_counters``, ``torch_module``, and the compressions it can apply to
    itself (``set_token_sparsification``, ``set_layer_skip``, ``set_token_cache``; by default
    they raise ``UnsupportedCapability`` naming the policy).
    """

    action_dim: int
    chunk_size: int = 1
    instruction: str = ""  # the current episode's, set by reset
    # open-loop steps per chunk that this policy asks for (a compressed variant's execution: {open_loop_steps});
    # None: the evaluation config's execute_steps
    execute_steps: int | None = None
    # observation key -> shape a policy server refuses requests without; None: not checked
    observation_shapes: dict[str, tuple[int, ...]] | None = None

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

    # -- compressions a policy applies to itself (policies.compression.compress) -----------------
    def set_token_sparsification(self, keep: float, method: str = "attention") -> None:
        """Keep ``keep`` of the image tokens after the ranking block (``method``: attention or random)."""
        raise UnsupportedCapability(f"{type(self).__name__} does not support token sparsification (it does not "
                                    "override Policy.set_token_sparsification)")

    def set_layer_skip(self, blocks: list[int]) -> None:
        """Skip these transformer blocks (early exit)."""
        raise UnsupportedCapability(f"{type(self).__name__} does not support layer skipping (it does not override "
                                    "Policy.set_layer_skip)")

    def set_token_cache(self, similarity: float) -> None:
        """Reuse image tokens whose patch stayed this similar (VLA-Cache)."""
        raise UnsupportedCapability(f"{type(self).__name__} does not support token caching (it does not override "
                                    "Policy.set_token_cache)")

    @abc.abstractmethod
    def act(self, obs) -> np.ndarray:
        """Return an (H, action_dim) float32 array of actions."""

    def batchable(self) -> bool:
        """Whether ``act_batch`` answers several sessions in one computation (one forward pass
        over a batch), which a policy server with ``max_batch > 1`` uses to stack concurrent
        requests. Declared, never guessed: False by default, and a policy says True only in
        configurations where ``act_batch`` gives each session what its own ``act`` would (up to
        float rounding) and ``act`` keeps no per-call state that the batch would skip (a token
        cache, a random generator drawn per call). A server serves the requests of a session
        whose policy is not batchable one at a time, as without batching."""
        return False

    def act_batch(self, sessions: Sequence[Policy], observations: Sequence) -> list[np.ndarray]:
        """``sessions[i].act(observations[i])`` for each ``i``: ``sessions`` are forks of this
        policy (``fork``), each holding its own episode's instruction and state, which is why a
        batch takes the forks rather than bare instructions. The default calls them one by one;
        a ``batchable`` policy overrides it with one computation over the batch. An exception
        fails the whole batch (a server then answers each request alone, so one bad observation
        costs only its own request), so an override checks every input before changing any
        session's state."""
        if len(sessions) != len(observations):
            raise ValueError(f"{len(sessions)} sessions and {len(observations)} observations: expected one each")
        return [session.act(obs) for session, obs in zip(sessions, observations)]


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
