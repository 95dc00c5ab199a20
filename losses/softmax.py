"""Symmetric softmax InfoNCE (CLIP), dense: the global [B, B] logit matrix."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def logits_from_scale(image_embedding: jax.Array, text_embedding: jax.Array, logit_scale: jax.Array) -> jax.Array:
    """[B, D] x [B', D] -> [B, B'] logits exp(logit_scale) * f g^T."""
    return jnp.exp(logit_scale) * image_embedding @ text_embedding.T


def softmax_contrastive_loss(
    image_embedding: jax.Array, text_embedding: jax.Array, logit_scale: jax.Array
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """CLIP loss 1/2 [CE(s F G^T, I) + CE(s G F^T, I)] over normalised [B, D] embeddings.

    `logit_scale` is the log of s (the clamp at log 100 belongs to the caller's
    parameter handling). Returns (loss, metrics) with image->text and text->image
    in-batch top-1 accuracy.
    """
    logits = logits_from_scale(image_embedding, text_embedding, logit_scale)
    labels = jnp.arange(logits.shape[0])
    i2t = -jnp.mean(jax.nn.log_softmax(logits, axis=1)[labels, labels])
    t2i = -jnp.mean(jax.nn.log_softmax(logits, axis=0)[labels, labels])
    metrics = {
        "i2t_accuracy": jnp.mean(jnp.argmax(logits, axis=1) == labels),
        "t2i_accuracy": jnp.mean(jnp.argmax(logits, axis=0) == labels),
    }
    return 0.5 * (i2t + t2i), metrics
