"""Compression methods from the VLA literature, as plain functions over modules and chunks.

- ``quantization``: per-channel int8/int4 fake quantization; torch's dynamic int8 linears.
- ``pruning``: unstructured magnitude pruning; structured (whole output rows) pruning.
- ``action_codec``: DCT action-chunk compression (FAST-style coefficient quantization) and
  temporal down-sampling with interpolation.
- ``fast``: FAST action tokens as pi0-FAST ships them (DCT, rounding, byte-pair encoding) and
  their decode failures.
- ``compress``: ``compress(policy, spec)`` combines them from a dict/YAML spec.
"""

from policies.compression.action_codec import dct_compress, temporal_downsample
from policies.compression.compress import CompressedPolicy, CompressionSpec, compress
from policies.compression.fast import FastTokenizer
from policies.compression.pruning import magnitude_prune, structured_prune_rows
from policies.compression.quantization import dynamic_int8, fake_quantize, fake_quantize_weight

__all__ = [
    "CompressedPolicy",
    "CompressionSpec",
    "FastTokenizer",
    "compress",
    "dct_compress",
    "dynamic_int8",
    "fake_quantize",
    "fake_quantize_weight",
    "magnitude_prune",
    "structured_prune_rows",
    "temporal_downsample",
]
