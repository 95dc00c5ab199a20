"""Language-model objectives: next-token cross-entropy (`lm`) and SimCTG's token-level contrastive margin loss
beside it (`simctg`; Su et al. 2022, METHODS.md §13).

A batch row is BOS, tokens, EOS, padding (0): the model reads tokens[:, :-1] and predicts tokens[:, 1:];
padding targets weigh nothing. Both terms are per sequence, with no term over the batch: any
config.loss.implementation computes the same loss, and the mean over the global batch is what the mesh
reduces.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from configs.errors import ConfigError

# The objectives that train a decoder (config.model.kind 'decoder').
LANGUAGE_OBJECTIVES = ("lm", "simctg", "salt", "phf")


def next_token_loss(logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
    """logits [B, L, V], targets [B, L] int (0 = no target) -> (mean CE over real targets, their count)."""
    weights = (targets != 0).astype(jnp.float32)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    count = jnp.sum(weights)
    return jnp.sum(nll * weights) / jnp.maximum(count, 1.0), count


def token_contrastive_loss(hidden: jax.Array, mask: jax.Array, margin: float) -> jax.Array:
    """SimCTG's L_CL (simctg/lossfunction.py): hidden [B, L, W], mask [B, L] bool ->
    mean over rows of 1/(n(n-1)) sum_{i != j real} max(0, margin - 1 + cos(h_i, h_j)), n = the row's real tokens.
    The official code averages over all non-padding pairs of the batch; per-row normalisation is the paper's
    equation and equals it when rows have one length."""
    h = hidden / jnp.sqrt(jnp.sum(jnp.square(hidden), axis=-1, keepdims=True) + 1e-12)
    cosine = jnp.einsum("bid,bjd->bij", h, h)
    pair = mask[:, :, None] & mask[:, None, :] & ~jnp.eye(mask.shape[1], dtype=bool)[None]
    hinge = jnp.maximum(0.0, margin - 1.0 + cosine) * pair
    n = jnp.sum(mask, axis=1).astype(jnp.float32)
    per_row = jnp.sum(hinge, axis=(1, 2)) / jnp.maximum(n * (n - 1), 1.0)
    rows = (n > 1).astype(jnp.float32)
    return jnp.sum(per_row * rows) / jnp.maximum(jnp.sum(rows), 1.0)


def lm_loss(params, batch, extra, rng, *, model, config):
    """Next-token cross-entropy on batch["text"]; metrics: perplexity (of this batch) and tokens."""
    del extra, rng
    tokens = batch["text"]
    out, _ = model.apply({"params": params}, tokens[:, :-1])
    loss, count = next_token_loss(out["logits"], tokens[:, 1:])
    metrics = {"lm_loss": loss, "perplexity": jnp.exp(loss), "tokens": count}
    margin = config.simctg.margin if config is not None and config.objective == "simctg" else 0.0
    if margin:
        contrastive = token_contrastive_loss(out["hidden"], tokens[:, :-1] != 0, margin)
        metrics["contrastive_loss"] = contrastive
        loss = loss + contrastive
    return loss, metrics


def no_batch_term(config) -> str:
    return "a language model's loss has no term over the batch to tile or ring"


def validate_simctg(config: ml_collections.ConfigDict) -> None:
    margin = config.simctg.margin
    if not 0.0 <= margin <= 2.0:
        raise ConfigError(
            f"config.simctg.margin={margin} is outside [0, 2] (cosines lie in [-1, 1]; the paper's is 0.5); "
            "set it there."
        )
