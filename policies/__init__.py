"""Policy adapters: VLA models, their compressed variants, scripted experts."""

from policies.base import Policy, check_chunk
from policies.chunk_executor import ChunkExecutor
from policies.normalization import ActionNormalizer

__all__ = ["ActionNormalizer", "ChunkExecutor", "Policy", "check_chunk"]
