"""config.model.attention='pallas': JAX's own Pallas flash attention (jax.experimental.pallas.ops.gpu.attention.mha,
Triton on NVIDIA GPUs) at any sequence length, the towers' second flash-attention path beside cuDNN's.

The kernel takes lengths that are multiples of its blocks, so models/transformer.fused_attention zero-pads the
sequence up to one, as it does for cuDNN (ViT-B/16's 197 tokens to 256, CLIP's 77 to 128), and here the padded keys
are masked through the kernel's segment ids: real tokens are segment 1, padding segment 0, and a query attends only
to keys of its own segment. Padded queries attend to padding alone (zeros, so their output is 0, never NaN) and are
sliced off. Forward and backward are Pallas kernels; on the CPU they run in Pallas' interpret mode (exact, slow: for
tests), chosen when the step is lowered, so a CPU host can also lower the GPU kernels
(tests/test_attention_kernels.py).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental.pallas.ops.gpu import attention as pallas_attention

# Sequence blocks of the forward kernel (the backward's are the library's 32): 64 rows match Hopper's warpgroup
# matmuls and pad 197 tokens to 256, as cuDNN's path does (models/transformer.CUDNN_LENGTH_MULTIPLE).
BLOCK = 64
BLOCK_SIZES = pallas_attention.BlockSizes(
    block_q=BLOCK, block_k=BLOCK, block_q_dkv=32, block_kv_dkv=32, block_q_dq=32, block_kv_dq=32
)


def pallas_flash_attention(
    query: jax.Array, key: jax.Array, value: jax.Array, *, length: int, causal: bool
) -> jax.Array:
    """q, k, v [B, N, heads, head_dim], N a multiple of BLOCK whose first `length` tokens are real (the caller pads:
    models/transformer.fused_attention) -> softmax(q k^T / sqrt(head_dim)) v over the real keys, [B, N, heads,
    head_dim]."""
    if jax.default_backend() == "tpu":
        raise ValueError(
            "config.model.attention='pallas' has GPU (Triton) kernels only; on TPU set config.model.attention='xla'."
        )
    batch, padded, _, head_dim = query.shape
    segments = jnp.broadcast_to((jnp.arange(padded) < length).astype(jnp.int32), (batch, padded))
    call = functools.partial(pallas_attention.mha, sm_scale=head_dim**-0.5, causal=causal, block_sizes=BLOCK_SIZES)
    return lax.platform_dependent(
        query, key, value, segments,
        cpu=functools.partial(call, interpret=True),
        default=functools.partial(call, interpret=False),
    )  # fmt: skip
