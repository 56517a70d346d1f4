"""Reuse of visual tokens that did not change between queries (VLA-Cache, Xu et al. 2025,
arXiv:2502.02175), for TinyVLA.

Between two queries of one episode most of a fixed camera's image is the same: table, walls,
the parts of the scene the arm did not touch. VLA-Cache keeps the attention keys and values of
those patches' tokens from the query that last computed them and recomputes only the rest:

- a patch is **static** when the cosine similarity of its pixels (``patchify``'s scaled values)
  with the same patch at the query that last computed its token is at least ``similarity``;
- static image tokens skip the patch embedding, every block's query/key/value projection,
  output projection and MLP; their cached keys and values stand in for them in every block's
  attention;
- the readout, proprio and instruction tokens and every changed patch are recomputed, attending
  over all tokens (their own fresh keys and values, the static tokens' cached ones).

A reused token's keys and values were computed in the previous query's context (the previous
proprio and changed patches): that staleness is what the approximation costs. The first query
of an episode computes every token. ``similarity > 1`` never reuses and gives the full forward
pass's numbers. VLA-Cache's further refinements (excluding task-relevant tokens ranked by
attention, layer-adaptive reuse) are not modelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from policies.tinyvla.model import TinyVLA, patchify


@dataclass
class TokenCache:
    """One episode's cached patches and keys/values (``clear`` at every episode start)."""

    similarity: float
    # per camera, the pixels each image token was last computed from: (n_patches, p*p*3)
    patches: dict[str, torch.Tensor] = field(default_factory=dict)
    # per block index, (1, heads, n_tokens, head_width) keys and values of every token
    keys: dict[int, torch.Tensor] = field(default_factory=dict)
    values: dict[int, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.similarity, bool) or not isinstance(self.similarity, (int, float)) or not 0.0 < self.similarity:
            raise ValueError(f"similarity={self.similarity!r}: expected a cosine similarity threshold > 0 "
                             "(> 1 never reuses a token)")

    def clear(self) -> None:
        self.patches.clear()
        self.keys.clear()
        self.values.clear()


def static_patches(previous: torch.Tensor, current: torch.Tensor, similarity: float) -> torch.Tensor:
    """Boolean mask over patches: cosine similarity of (n, d) pixel rows >= ``similarity``.
    Two all-zero patches are equal (similarity 1)."""
    dot = (previous * current).sum(dim=-1)
    norms = previous.norm(dim=-1) * current.norm(dim=-1)
    both_zero = (previous.abs().sum(dim=-1) == 0) & (current.abs().sum(dim=-1) == 0)
    cosine = torch.where(norms > 0, dot / norms.clamp_min(torch.finfo(norms.dtype).tiny), both_zero.to(dot.dtype))
    return cosine >= similarity


def changed_patches(model: TinyVLA, cache: TokenCache, images: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per camera, this query's patch pixels and which patches must be recomputed (all of them
    while the cache is empty). Reads the cache without changing it."""
    patches = {}
    for camera, patch in model.config.patch_sizes.items():
        pixels = patchify(images[camera], patch)[0]
        if cache.keys:
            changed = ~static_patches(cache.patches[camera], pixels, cache.similarity)
        else:
            changed = torch.ones(len(pixels), dtype=torch.bool)
        patches[camera] = pixels, changed
    return patches


def reused_tokens(patches: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> int:
    """How many image tokens a query with these ``changed_patches`` reuses."""
    return sum(int((~changed).sum()) for _, changed in patches.values())


def cached_forward(model: TinyVLA, cache: TokenCache, images: dict[str, torch.Tensor],
                   instruction_ids: torch.Tensor, proprio: torch.Tensor,
                   patches: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None) -> torch.Tensor:
    """TinyVLA's forward pass with static image tokens reused from ``cache`` (updated in place);
    ``patches`` is this query's ``changed_patches`` when the caller has them. Returns the
    normalised action chunk, shape (1, chunk_size, action_dim)."""
    config = model.config
    if proprio.shape[0] != 1:
        raise ValueError(f"token caching runs one observation at a time: got a batch of {proprio.shape[0]}")
    if model.token_keep < 1.0:
        raise ValueError("token caching and token sparsification do not combine: the sparsified "
                         "tokens' keys and values would have no cached counterpart")
    if patches is None:
        patches = changed_patches(model, cache, images)
    prefix = config.n_prefix_tokens
    proprio_token = model.proprio_embed((proprio - model.proprio_mean) / model.proprio_std)[:, None]
    words = model.word_embed(instruction_ids) + model.word_pos
    tokens = [model.readout, proprio_token, words]
    # token positions recomputed this query: the prefix, then each camera's changed patches
    active = [torch.arange(prefix)]
    offset = prefix
    for camera, (pixels, changed) in patches.items():
        index = changed.nonzero().flatten()
        previous = cache.patches.get(camera, pixels)
        cache.patches[camera] = torch.where(changed[:, None], pixels, previous)
        tokens.append(model.patch_embed[camera](pixels[index])[None] + model.patch_pos[camera][index])
        active.append(index + offset)
        offset += len(pixels)
    x = torch.cat(tokens, dim=1)
    active_index = torch.cat(active)
    for number, block in enumerate(model.blocks):
        if number in model.skip_blocks:
            continue
        x = _cached_block(block, x, active_index, cache, number, offset)
    out = model.action_head(model.norm(x[:, 0]))
    return out.reshape(1, config.chunk_size, config.action_dim)


def _cached_block(block, x: torch.Tensor, active: torch.Tensor, cache: TokenCache, number: int,
                  n_tokens: int) -> torch.Tensor:
    """``Block.forward`` for the active tokens ``x`` (at positions ``active`` of ``n_tokens``),
    their keys and values written into the cache's full set, which the attention reads."""
    attention = block.attn
    batch, tokens, width = x.shape
    heads = attention.heads
    q, k, v = attention.qkv(block.norm1(x)).reshape(batch, tokens, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
    if number in cache.keys:
        keys, values = cache.keys[number].clone(), cache.values[number].clone()
        keys[:, :, active], values[:, :, active] = k, v
    else:
        if tokens != n_tokens:
            raise RuntimeError("the token cache has no keys for a partial query: clear() it at the episode start")
        keys, values = k, v
    cache.keys[number], cache.values[number] = keys, values
    weights = torch.softmax(q @ keys.transpose(-2, -1) / math.sqrt(width // heads), dim=-1)
    out = (weights @ values).transpose(1, 2).reshape(batch, tokens, width)
    x = x + attention.proj(out)
    return x + block.mlp(block.norm2(x))
