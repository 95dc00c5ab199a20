"""GradCache gradient accumulation: the contrastive loss over the whole global batch, with the
towers' activations held for one micro-batch at a time (Gao et al. 2021, "Scaling Deep Contrastive
Learning Batch Size under Memory Limited Setup").

1. embed every micro-batch without keeping its graph: embeddings [B, D] for the whole batch;
2. the loss over all B examples and its gradient with respect to the cached embeddings (and to the
   parameters the loss reads directly, e.g. the temperature);
3. per micro-batch, recompute the forward pass and backpropagate that micro-batch's slice of the
   embedding gradient into the parameters, summing over micro-batches.

The result equals the full-batch gradient (same loss, same order of examples). Averaging
per-micro-batch losses instead would shrink the negatives per example from B - 1 to B/k - 1.

Trade: activation memory is that of one micro-batch, B/k, plus O(B D) for the embeddings and their
gradients; compute is one extra forward pass of the towers, about +1/3 of a step's FLOPs (+1/4 with
remat, which already recomputes the forward pass once).

Micro-batch i takes the examples i, i + k, i + 2k, ...: with the batch split over devices in
contiguous blocks, each device then holds B/(k n) examples of every micro-batch, so every micro-batch
keeps all devices busy and no example moves between devices.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from losses.objectives import Objective
from models.mesh_axes import pin_batch


def split_microbatches(tree: Any, microbatches: int) -> Any:
    """[B, ...] leaves -> [k, B/k, ...]; micro-batch i holds examples i, i + k, i + 2k, ..."""
    return jax.tree.map(
        lambda x: x.reshape(x.shape[0] // microbatches, microbatches, *x.shape[1:]).swapaxes(0, 1), tree
    )


def merge_microbatches(tree: Any) -> Any:
    """Inverse of split_microbatches: [k, B/k, ...] -> [B, ...] in the original example order."""
    return jax.tree.map(lambda x: x.swapaxes(0, 1).reshape(x.shape[0] * x.shape[1], *x.shape[2:]), tree)


def _keep_batch_sharded(tree: Any) -> Any:
    """Under a mesh context, pins [k, B/k, ...] leaves' B/k dimension to the mesh's batch axes."""
    return jax.tree.map(lambda x: pin_batch(x, dim=1), tree)


def grad_cache_value_and_grad(
    objective: Objective,
    params: Any,
    batch: dict[str, jax.Array],
    extra: Any,
    rng: jax.Array,
    *,
    model,
    config,
    microbatches: int,
) -> tuple[tuple[jax.Array, dict[str, Any]], Any]:
    """((loss, metrics), grads) of `objective.loss` on `batch`, as jax.value_and_grad(has_aux=True)
    gives them, computed micro-batch by micro-batch. Needs the objective's embed/loss_from_embeddings
    pair and a batch size divisible by `microbatches`; micro-batch i embeds with rng folded with i."""
    if objective.embed is None or objective.loss_from_embeddings is None:
        raise ValueError(
            f"Objective {config.objective!r} has no embed/loss_from_embeddings pair, which GradCache needs; "
            "set config.microbatches to 1."
        )
    micro = _keep_batch_sharded(split_microbatches(batch, microbatches))
    steps = jnp.arange(microbatches)

    def embed(p, microbatch, i):
        return objective.embed(p, microbatch, extra, jax.random.fold_in(rng, i), model=model, config=config)

    # 1. Forward only: lax.map keeps nothing for a backward pass.
    cached = merge_microbatches(lax.map(lambda args: embed(lax.stop_gradient(params), *args), (micro, steps)))

    # 2. Loss over the global batch; d loss / d embeddings, plus the direct d loss / d params.
    def loss_fn(p, embeddings):
        return objective.loss_from_embeddings(p, embeddings, batch, extra, rng, model=model, config=config)

    (loss, metrics), (grads, d_embeddings) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(params, cached)

    # 3. Recompute each micro-batch's forward pass and pull its slice of d_embeddings back into params.
    def backward(grads, args):
        microbatch, d_micro, i = args
        _, pullback = jax.vjp(lambda p: embed(p, microbatch, i), params)
        return jax.tree.map(jnp.add, grads, pullback(d_micro)[0]), None

    d_micro = _keep_batch_sharded(split_microbatches(d_embeddings, microbatches))
    grads, _ = lax.scan(backward, grads, (micro, d_micro, steps))
    return (loss, metrics), grads
