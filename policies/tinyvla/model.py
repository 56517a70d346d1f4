"""TinyVLA: a small vision-language-action transformer (the suite's reference VLA).

Token sequence, in this order::

    [readout] [proprio] [instruction word x L] [image patches of each camera ...]

- each camera image (uint8, S x S x 3) is cut into non-overlapping p x p patches, each patch
  linearly embedded (own embedding and learned positions per camera);
- the instruction is a fixed-length sequence of word ids (``WordTokenizer``);
- proprioception (normalised with the training set's mean and std) is one linear token;
- a pre-norm transformer encoder (explicit attention, so the FLOP counter sees every matmul and
  the attention scores are there for token sparsification);
- the readout token's output is mapped to a chunk of ``chunk_size`` normalised actions.

**Visual token sparsification** (FastV-style, Chen et al. 2024): after block
``sparsify_after_block`` only ``n_keep = max(1, round(keep * n_image_tokens))`` image tokens go on
through the remaining blocks, chosen by

- ``attention``: the attention each image token receives from the non-image tokens (readout,
  proprio, instruction) in the block before, averaged over heads and those queries;
- ``norm``: the L2 norm of the token's hidden state;
- ``random``: uniformly at random (a ``torch.Generator`` the caller seeds).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

SPARSIFY_METHODS = ("attention", "norm", "random")


@dataclass(frozen=True)
class TinyVLAConfig:
    vocab_size: int
    proprio_dim: int
    action_dim: int = 7
    chunk_size: int = 8
    image_size: int = 64
    # camera observation key -> patch side in pixels (the wrist view needs less detail)
    patch_sizes: dict[str, int] = field(default_factory=lambda: {"image": 8, "wrist_image": 16})
    max_instruction_tokens: int = 12
    width: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: int = 4
    sparsify_after_block: int = 1
    proprio_key: str = "proprio"  # the observation the proprio token reads ("libero_state" on LIBERO)

    def __post_init__(self):
        for camera, patch in self.patch_sizes.items():
            if self.image_size % patch:
                raise ValueError(f"patch_sizes[{camera!r}]={patch}: expected a divisor of image_size={self.image_size}")
        if self.width % self.heads:
            raise ValueError(f"width={self.width}: expected a multiple of heads={self.heads}")
        if not 0 <= self.sparsify_after_block < self.depth:
            raise ValueError(f"sparsify_after_block={self.sparsify_after_block}: expected 0..{self.depth - 1}")

    @property
    def n_image_tokens(self) -> int:
        return sum((self.image_size // p) ** 2 for p in self.patch_sizes.values())

    @property
    def n_prefix_tokens(self) -> int:
        """Readout, proprio and instruction tokens: everything before the image patches."""
        return 2 + self.max_instruction_tokens

    def to_dict(self) -> dict:
        return asdict(self)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, tokens, width = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(width // self.heads), dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(batch, tokens, width)
        return self.proj(out), weights


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        attended, weights = self.attn(self.norm1(x))
        x = x + attended
        return x + self.mlp(self.norm2(x)), weights


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, S, S, 3) uint8 -> (B, (S/p)^2, p*p*3) float, scaled to about zero mean, unit range."""
    batch, size, _, channels = images.shape
    n = size // patch
    x = images.float().div(255.0).sub(0.5).mul(4.0)
    x = x.reshape(batch, n, patch, n, patch, channels).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(batch, n * n, patch * patch * channels)


class TinyVLA(nn.Module):
    # pruning leaves the action head whole: a zeroed row there would delete an action dimension
    pruning_exclude = ("action_head",)

    def __init__(self, config: TinyVLAConfig):
        super().__init__()
        self.config = config
        width = config.width
        self.patch_embed = nn.ModuleDict(
            {camera: nn.Linear(p * p * 3, width) for camera, p in config.patch_sizes.items()}
        )
        self.patch_pos = nn.ParameterDict(
            {
                camera: nn.Parameter(0.02 * torch.randn((config.image_size // p) ** 2, width))
                for camera, p in config.patch_sizes.items()
            }
        )
        self.word_embed = nn.Embedding(config.vocab_size, width)
        self.word_pos = nn.Parameter(0.02 * torch.randn(config.max_instruction_tokens, width))
        self.proprio_embed = nn.Linear(config.proprio_dim, width)
        self.readout = nn.Parameter(0.02 * torch.randn(1, 1, width))
        self.blocks = nn.ModuleList(Block(width, config.heads, config.mlp_ratio) for _ in range(config.depth))
        self.norm = nn.LayerNorm(width)
        self.action_head = nn.Linear(width, config.chunk_size * config.action_dim)
        self.register_buffer("proprio_mean", torch.zeros(config.proprio_dim))
        self.register_buffer("proprio_std", torch.ones(config.proprio_dim))
        # token sparsification: keep fraction (1.0 = off), method, generator for "random"
        self.token_keep = 1.0
        self.token_method = "attention"
        self.token_generator: torch.Generator | None = None
        self.last_kept_indices: torch.Tensor | None = None
        # layer skipping: these blocks pass their input through untouched (empty = off)
        self.skip_blocks: frozenset[int] = frozenset()

    def n_kept_image_tokens(self) -> int:
        return max(1, round(self.token_keep * self.config.n_image_tokens))

    def forward(
        self, images: dict[str, torch.Tensor], instruction_ids: torch.Tensor, proprio: torch.Tensor
    ) -> torch.Tensor:
        """Return normalised action chunks, shape (B, chunk_size, action_dim)."""
        config = self.config
        batch = proprio.shape[0]
        proprio_token = self.proprio_embed((proprio - self.proprio_mean) / self.proprio_std)[:, None]
        words = self.word_embed(instruction_ids) + self.word_pos
        patches = [
            self.patch_embed[camera](patchify(images[camera], p)) + self.patch_pos[camera]
            for camera, p in config.patch_sizes.items()
        ]
        x = torch.cat([self.readout.expand(batch, -1, -1), proprio_token, words, *patches], dim=1)
        prefix = config.n_prefix_tokens
        for index, block in enumerate(self.blocks):
            if index in self.skip_blocks:
                continue
            x, weights = block(x)
            if index == config.sparsify_after_block and self.token_keep < 1.0:
                x = self._sparsify(x, weights, prefix)
        out = self.action_head(self.norm(x[:, 0]))
        return out.reshape(batch, config.chunk_size, config.action_dim)

    def _sparsify(self, x: torch.Tensor, weights: torch.Tensor, prefix: int) -> torch.Tensor:
        image_tokens = x[:, prefix:]
        if self.token_method == "attention":
            scores = weights[:, :, :prefix, prefix:].mean(dim=(1, 2))
        elif self.token_method == "norm":
            scores = image_tokens.norm(dim=-1)
        else:
            scores = torch.rand(image_tokens.shape[:2], generator=self.token_generator)
        keep = scores.topk(self.n_kept_image_tokens(), dim=1).indices.sort(dim=1).values
        self.last_kept_indices = keep
        kept = image_tokens.gather(1, keep[..., None].expand(-1, -1, x.shape[-1]))
        return torch.cat([x[:, :prefix], kept], dim=1)
