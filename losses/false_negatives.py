"""False-negative masks for contrastive losses: candidates that are probably positives in disguise.

Two rules, each a pure function returning a boolean mask (True = false negative, leave it out):
- `margin_false_negatives` (UniME stage 2): a candidate scoring above the positive plus a margin
  beta, S_ij > S_ii + beta, is more likely a duplicate of the positive than a hard negative.
- `frozen_false_negatives` (MultiCSR stage 3): a frozen, already trained encoder judges two texts
  equivalent when their cosine exceeds phi (0.95 in MultiCSR; the code's test cos/tau > 20 phi at
  tau = 0.05 is the same inequality).
and `mask_logits`, which applies a mask in one of two ways:
- "exclude" (default, the paper's intent: masked candidates take no part in the softmax): the logit
  becomes the dtype's lowest finite value, so exp() is 0 and the gradient has no inf - inf;
- "zero" (MultiCSR's official code: `weights = 0` multiplies the logit): the logit becomes 0, which
  still puts exp(0) = 1 in the denominator. Kept only to reproduce that code's numbers.
MultiCSR's per-entry BCE on the softmax probabilities is a separate loss choice, not a mask, and is
not here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

MASK_MODES = ("exclude", "zero")


def margin_false_negatives(scores: jax.Array, positive_scores: jax.Array, margin: float) -> jax.Array:
    """[B, C] candidate scores, [B] positive scores -> [B, C] bool: scores > positive + margin."""
    return scores > positive_scores[:, None] + margin


def frozen_false_negatives(
    frozen_anchors: jax.Array, frozen_candidates: jax.Array, threshold: float, candidate_is_positive: jax.Array
) -> jax.Array:
    """[B, D] and [C, D] L2-normalised embeddings from a frozen encoder -> [B, C] bool.

    True where cos(anchor_i, candidate_j) > threshold and j is not i's positive (`candidate_is_positive`
    [B, C] bool): a positive is never masked, however similar.
    """
    similarity = jax.lax.stop_gradient(frozen_anchors @ frozen_candidates.T)
    return (similarity > threshold) & ~candidate_is_positive


def mask_logits(logits: jax.Array, false_negatives: jax.Array, mode: str = "exclude") -> jax.Array:
    """logits [..., C] with the entries where `false_negatives` holds excluded (mode "exclude") or set to 0 ("zero")."""
    if mode not in MASK_MODES:
        raise ValueError(f"Unknown false-negative mask mode {mode!r}; use one of {list(MASK_MODES)}.")
    fill = jnp.finfo(logits.dtype).min if mode == "exclude" else 0.0
    return jnp.where(false_negatives, fill, logits)
