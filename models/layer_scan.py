"""A tower's identical blocks run unrolled or as one `lax.scan` (config.model.scan_layers), same parameters.

Scanned, XLA compiles one block instead of `depth` of them (big_vision's `scan` option): ViT-L/14's train step
for 256 devices compiles in 75 s instead of 127 (docs/scaling.md "Sizing a pod slice"). Unlike big_vision, the
parameters are not stored stacked: the unrolled loop creates and initialises them (`block0` ...
`block{depth-1}`), so one seed gives the same weights either way and every checkpoint, weight converter and
partitioning rule is unchanged; the stack of the per-block parameters is made inside the step (a copy of the
blocks' weights per step).
"""

from __future__ import annotations

from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from models.mesh_axes import pin_batch


def apply_blocks(
    parent: nn.Module,
    block: type[nn.Module],
    options: Mapping,
    depth: int,
    x: jax.Array,
    *args,
    scan: bool,
    remat: bool,
    dropout: bool = False,
) -> jax.Array:
    """x [B, N, W] through `block(**options)` `depth` times (each called as (x, *args)), named block{i}.

    Call from `parent`'s compact method. `remat` recomputes each block in the backward pass; `dropout` says
    the blocks draw from the "dropout" rng stream (one key per block when scanned)."""
    if not scan or parent.is_initializing():
        layer = nn.remat(block) if remat else block
        for i in range(depth):
            x = layer(**options, name=f"block{i}")(x, *args)
        return x
    params = parent.variables["params"]
    stacked = jax.tree.map(lambda *p: jnp.stack(p), *(params[f"block{i}"] for i in range(depth)))
    keys = jax.random.split(parent.make_rng("dropout"), depth) if dropout else jnp.zeros((depth,), jnp.uint32)

    # Without a pin, XLA's partitioner loses the carry's batch sharding in the loop and keeps the FSDP-split
    # weights in place, all-reducing activations instead (ViT-B/16 on 256 devices: 623 GiB sent per device per
    # step, not 2.3); pinned to the batch axes at each block's edges, it gathers the weights as unrolled.
    def body(carry: jax.Array, layer: tuple) -> tuple[jax.Array, None]:
        block_params, key = layer
        rngs = {"dropout": key} if dropout else {}
        out = block(**options, parent=None).apply({"params": block_params}, pin_batch(carry), *args, rngs=rngs)
        return pin_batch(out), None

    if remat:
        # prevent_cse=False: inside a scan the loop already keeps XLA from merging the recomputation away.
        body = jax.checkpoint(body, prevent_cse=False)
    return jax.lax.scan(body, x, (stacked, keys))[0]
