"""``TinyVLAPolicy``: the reference VLA behind the ``Policy`` interface."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from policies.base import EPISODE_COUNTERS, Policy
from policies.normalization import ActionNormalizer
from policies.tinyvla import checkpoint
from policies.tinyvla.model import SPARSIFY_METHODS, TinyVLA
from policies.tinyvla.token_cache import TokenCache, cached_forward, changed_patches, reused_tokens
from policies.tinyvla.tokenizer import ByteBPETokenizer, WordTokenizer


class TinyVLAPolicy(Policy):
    """Reads ``obs["image"]``, ``obs["wrist_image"]`` (uint8, S x S x 3) and ``obs["proprio"]``
    (the env's ``rgb`` observation mode; ``obs["libero_state"]`` for a model trained on LIBERO) and the instruction given at ``reset``; returns a chunk of
    ``chunk_size`` actions in the env's units, clipped to [-1, 1]."""

    def __init__(self, model: TinyVLA, tokenizer: WordTokenizer | ByteBPETokenizer, normalizer: ActionNormalizer, token_seed: int = 0):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.normalizer = normalizer
        self.action_dim = model.config.action_dim
        self.chunk_size = model.config.chunk_size
        self.token_seed = token_seed
        self._generator = torch.Generator().manual_seed(token_seed)
        self.token_cache: TokenCache | None = None
        # FLOPs of one cached call by how many image tokens it reused, each counted once by
        # torch's FLOP counter (a call's FLOPs depend only on that number)
        self._flops_by_reused: dict[tuple[int, ...], int] = {}  # per-camera reused tokens -> FLOPs
        self.reset()

    def reset(self, instruction: str = "") -> None:
        super().reset(instruction)
        self._instruction_ids = torch.tensor([self.tokenizer.encode(instruction)], dtype=torch.long)
        # random token dropping restarts every episode, so an episode's result does not depend
        # on which episodes ran before it in the same process
        self._generator.manual_seed(self.token_seed)
        if self.token_cache is not None:
            self.token_cache.clear()
        self._counters = dict.fromkeys(EPISODE_COUNTERS, 0)

    def episode_counters(self) -> dict[str, int]:
        return dict(self._counters)

    def torch_module(self):
        return self.model

    def set_token_sparsification(self, keep: float, method: str = "attention") -> None:
        """Keep ``max(1, round(keep * n_image_tokens))`` image tokens after the model's
        ``sparsify_after_block``-th block (``keep = 1`` turns sparsification off)."""
        if not 0.0 < keep <= 1.0:
            raise ValueError(f"keep={keep}: expected a fraction in (0, 1]")
        if method not in SPARSIFY_METHODS:
            raise ValueError(f"method={method!r}: expected one of {SPARSIFY_METHODS}")
        self.model.token_keep = float(keep)
        self.model.token_method = method
        self.model.token_generator = self._generator

    def set_layer_skip(self, blocks: list[int]) -> None:
        """Skip these transformer blocks (their residual stream passes through): early exit when
        they are the last ones, layer dropping otherwise. The block after which visual tokens
        are sparsified cannot be skipped (its attention ranks them)."""
        depth = self.model.config.depth
        bad = [b for b in blocks if isinstance(b, bool) or not isinstance(b, int) or not 0 <= b < depth]
        if bad or len(set(blocks)) != len(blocks) or len(blocks) >= depth:
            raise ValueError(f"blocks={blocks}: expected distinct block indices from 0 to {depth - 1}, "
                             f"at most {depth - 1} of them (one block must run)")
        if self.model.config.sparsify_after_block in blocks:
            raise ValueError(f"blocks={blocks}: block {self.model.config.sparsify_after_block} ranks the visual tokens "
                             "for token sparsification (model.config.sparsify_after_block) and cannot be skipped")
        self.model.skip_blocks = frozenset(blocks)

    def set_token_cache(self, similarity: float) -> None:
        """Reuse the keys and values of image tokens whose patch changed less than
        ``similarity`` (cosine) since it was last computed (``policies.tinyvla.token_cache``);
        the episode counters gain ``reused_image_tokens`` and ``flops_saved``."""
        if self.model.token_keep < 1.0:
            raise ValueError("token caching and token sparsification do not combine: choose one")
        self.token_cache = TokenCache(similarity)
        self._flops_by_reused = {}

    def _cached_call(self, images: dict[str, torch.Tensor], proprio: torch.Tensor) -> torch.Tensor:
        from torch.utils.flop_counter import FlopCounterMode

        patches = changed_patches(self.model, self.token_cache, images)
        # a query's FLOPs depend on how many tokens of each camera it reuses (the cameras' patches
        # differ in size), so they are measured once per such count, whatever came before
        level = tuple(reused_tokens({camera: part}) for camera, part in patches.items())
        counter = None if level in self._flops_by_reused else FlopCounterMode(display=False)
        with counter or contextlib.nullcontext():
            chunk = cached_forward(self.model, self.token_cache, images, self._instruction_ids, proprio, patches)
        if counter is not None:
            self._flops_by_reused[level] = int(counter.get_total_flops())
        self._counters["reused_image_tokens"] += sum(level)
        full = (0,) * len(level)
        if full in self._flops_by_reused:  # the first call of an episode computes every token
            self._counters["flops_saved"] += self._flops_by_reused[full] - self._flops_by_reused[level]
        return chunk

    def _tensor(self, obs, key: str, shape: tuple[int, ...], dtype) -> torch.Tensor:
        if key not in obs:
            raise KeyError(f"TinyVLA needs obs[{key!r}] (make the env with obs_mode='rgb'); got keys {sorted(obs)}")
        value = np.asarray(obs[key])
        if value.shape != shape:
            raise ValueError(f"obs[{key!r}] has shape {value.shape}, expected {shape}")
        return torch.from_numpy(np.array(value, dtype=dtype))[None]  # a copy: inputs may be read-only buffers

    def _inputs(self, obs) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The model's inputs from one observation, each with a batch of one (checked: shapes
        and keys)."""
        config = self.model.config
        size = config.image_size
        images = {camera: self._tensor(obs, camera, (size, size, 3), np.uint8) for camera in config.patch_sizes}
        return images, self._tensor(obs, config.proprio_key, (config.proprio_dim,), np.float32)

    @torch.no_grad()  # not inference_mode: quanto's int4 / int2 matmuls fail under it
    def act(self, obs) -> np.ndarray:
        images, proprio = self._inputs(obs)
        if self.token_cache is None:
            chunk = self.model(images, self._instruction_ids, proprio)[0].numpy()
        else:
            chunk = self._cached_call(images, proprio)[0].numpy()
        return np.clip(self.normalizer.unnormalize(chunk), -1.0, 1.0)

    def batchable(self) -> bool:
        # a token cache (each session's last keys/values) and 'random' token dropping (each
        # session's generator, drawn per call) are per-session state that changes on every call:
        # one forward pass over several sessions cannot keep it apart. A subclass with its own
        # act is not batchable unless it says so (act_batch below computes what this act does).
        random_dropping = self.model.token_keep < 1.0 and self.model.token_method == "random"
        return self.token_cache is None and not random_dropping and type(self).act is TinyVLAPolicy.act

    @torch.no_grad()
    def act_batch(self, sessions: Sequence[Policy], observations: Sequence) -> list[np.ndarray]:
        """One forward pass of this policy's model for every session (forks of this policy: the
        same weights), each with its own instruction and observation; equal to each session's
        ``act`` up to float rounding (the matmuls have other shapes). Sessions that are not
        batchable TinyVLA forks are answered one by one."""
        if not (self.batchable() and all(isinstance(s, TinyVLAPolicy) and s.batchable() for s in sessions)):
            return super().act_batch(sessions, observations)
        if len(sessions) != len(observations):
            raise ValueError(f"{len(sessions)} sessions and {len(observations)} observations: expected one each")
        # every observation is checked and converted before the forward pass (a bad one raises
        # here, before anything ran); instructions are each session's own, already tokenised
        inputs = [self._inputs(obs) for obs in observations]
        images = {camera: torch.cat([each[camera] for each, _ in inputs]) for camera in self.model.config.patch_sizes}
        proprio = torch.cat([each for _, each in inputs])
        instruction_ids = torch.cat([session._instruction_ids for session in sessions])  # type: ignore[attr-defined]
        chunks = self.model(images, instruction_ids, proprio).numpy()
        return [np.clip(self.normalizer.unnormalize(chunk), -1.0, 1.0) for chunk in chunks]


def load_reference(directory: str | Path | None = None, name: str = checkpoint.REFERENCE_NAME, token_seed: int = 0) -> TinyVLAPolicy:
    """The shipped reference VLA (or another checkpoint in ``directory``)."""
    model, tokenizer, normalizer, _ = checkpoint.load(Path(directory) if directory else checkpoint.REFERENCE_DIR, name)
    return TinyVLAPolicy(model, tokenizer, normalizer, token_seed=token_seed)
