"""SPACE-2 (He et al., COLING 2022; METHODS.md §20): semi-supervised contrastive pretraining of a dialog encoder
whose labelled utterances are compared through their semantic trees.

Each labelled utterance has a frame (domain -> intent -> slot -> value); its items in up to ten views (nodes D, I,
S, V; edges DI, IS, SV; paths DIS, ISV, DISV) arrive as ids, int32 [B, V, K] padded with -1, one row per view of
config.space2.views (input_pipeline/dialog_frames.py; the names are checked in training/method_validation.py).
The score of two utterances in view v is the Jaccard of their item sets, s_v(a, b) = |A_v & B_v| / |A_v | B_v|
(0 when both are empty). Each view has its own head on the text features, z_v = normalize(tanh(W_v h))
(models/two_tower.py `encode_text_views`), and its own soft SupCon over the 2B features of two dropout passes of
the batch, p_ik = exp(z_i.z_k / tau) / sum_{k' != i} exp(z_i.z_k' / tau):
    l_i = -(tau / tau_b) sum_{j != i} s_ij log p_ij / sum_{j != i} s_ij,
s tiled over the two passes and each feature's own twin set to 1; the loss is the mean over the 2B anchors and the
views. Unlabelled utterances get the same loss with s = 0 off the twins (SimCSE-style). The step's loss is
    [L_sup + w MLM(labelled)] + [L_self + w MLM(unlabelled)],  w = 0.1, tau = tau_b = 0.07,
a labelled and an unlabelled batch of equal size (SPACE-2's 128 + 128). MLM: BERT's 15% of the tokens (80% [MASK],
10% a random token, 10% kept), predicted through a dense-GELU-LayerNorm transform and the tied token embedding,
token-mean cross-entropy (the official pre-training script's --token_loss=true). The [MASK] token is one extra row
of the text tower's embedding, after the tokenizer's vocabulary. !! The official preprocessing's masking is not
read; BERT's recipe is assumed.

Options (config.space2): `views`, the views whose heads are trained (their names; ("I",) with `supervised` is the
hard-label SupCon baseline: same intent = positive); `supervised` (False: the labelled batch gets the unlabelled
loss too, the SimCSE-style baseline); `temperature`, `base_temperature`, `mlm_weight`, `mlm_probability`.
Dense only: the soft targets are pairwise scores of the whole 2B x 2B matrix.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from configs.errors import ConfigError
from losses.masked_lm import mask_id_of, mlm_inputs, mlm_loss


def jaccard_scores(ids_a: jax.Array, ids_b: jax.Array) -> jax.Array:
    """Item ids [B, V, K] and [C, V, K] (-1 = none; an id at most once per view) -> [V, B, C] Jaccard per view."""
    present_a, present_b = ids_a >= 0, ids_b >= 0
    same = (ids_a[:, None, :, :, None] == ids_b[None, :, :, None, :]) & present_a[:, None, :, :, None]
    shared = jnp.sum(same, axis=(-2, -1)).astype(jnp.float32)  # [B, C, V]
    union = jnp.sum(present_a, -1)[:, None] + jnp.sum(present_b, -1)[None] - shared
    return jnp.transpose(jnp.where(union > 0, shared / jnp.maximum(union, 1), 0.0), (2, 0, 1))


def soft_supcon_loss(
    features: jax.Array, scores: jax.Array | None, temperature: float, base_temperature: float
) -> jax.Array:
    """features [2B, D] (L2-normalised; rows i and i + B two passes of one example), scores [B, B] or None
    (positives: the twins alone) -> the mean over the 2B anchors of the soft SupCon loss (module docstring)."""
    n = features.shape[0]
    batch = n // 2
    logits = features @ features.T / temperature
    itself = jnp.eye(n, dtype=bool)
    log_prob = logits - jax.nn.logsumexp(jnp.where(itself, -jnp.inf, logits), axis=1, keepdims=True)
    targets = jnp.zeros((n, n)) if scores is None else jnp.tile(scores, (2, 2))
    twin = jnp.roll(jnp.eye(n, dtype=bool), batch, axis=1)
    targets = jnp.where(itself, 0.0, jnp.where(twin, 1.0, targets))
    mean_log_prob = jnp.sum(targets * jnp.where(itself, 0.0, log_prob), axis=1) / jnp.sum(targets, axis=1)
    return -(temperature / base_temperature) * jnp.mean(mean_log_prob)


def multi_view_loss(views: jax.Array, scores: jax.Array | None, temperature: float, base_temperature: float):
    """views [2B, V, D] (one normalised feature per view head), scores [V, B, B] or None -> mean over the views."""
    per_view = [
        soft_supcon_loss(views[:, v], None if scores is None else scores[v], temperature, base_temperature)
        for v in range(views.shape[1])
    ]
    return jnp.mean(jnp.stack(per_view))


def loss(params, batch, extra, rng, *, model, config):
    """SPACE-2's step loss on a batch of labelled utterances ("text", "frame" [B, V, K]) and as many unlabelled
    ones ("unlabelled"); see the module docstring."""
    del extra
    options = config.space2
    contrast_rng, mlm_rng, mlm_dropout_rng = jax.random.split(rng, 3)
    labelled, unlabelled = batch["text"], batch["unlabelled"]
    b = labelled.shape[0]
    stacked = jnp.concatenate([labelled, labelled, unlabelled, unlabelled])
    views = model.apply(
        {"params": params}, stacked, deterministic=False, method=model.encode_text_views, rngs={"dropout": contrast_rng}
    )["view_embedding"]
    taus = (options.temperature, options.base_temperature)
    scores = jaccard_scores(batch["frame"], batch["frame"]) if options.supervised else None
    supervised = multi_view_loss(views[: 2 * b], scores, *taus)
    self_supervised = multi_view_loss(views[2 * b :], None, *taus)
    value = supervised + self_supervised
    metrics = {"supervised": supervised, "self_supervised": self_supervised}
    if options.mlm_weight:
        inputs, labels = mlm_inputs(
            jnp.concatenate([labelled, unlabelled]), mlm_rng, mask_id_of(params), options.mlm_probability
        )
        logits = model.apply(
            {"params": params}, inputs, deterministic=False, method=model.mlm_logits, rngs={"dropout": mlm_dropout_rng}
        )
        mlm_labelled, accuracy_labelled = mlm_loss(logits[:b], labels[:b])
        mlm_unlabelled, accuracy_unlabelled = mlm_loss(logits[b:], labels[b:])
        value = value + options.mlm_weight * (mlm_labelled + mlm_unlabelled)
        metrics["mlm"] = (mlm_labelled + mlm_unlabelled) / 2
        metrics["mlm_accuracy"] = (accuracy_labelled + accuracy_unlabelled) / 2
    return value, metrics


def validate(config) -> None:
    """Raises ConfigError, naming the key and the fix, for a bad config.space2 value."""
    options = config.space2
    for key in ("temperature", "base_temperature"):
        if options[key] <= 0:
            raise ConfigError(f"config.space2.{key} must be positive, not {options[key]!r}.")
    if options.mlm_weight < 0:
        raise ConfigError(f"config.space2.mlm_weight must be >= 0 (0 = no MLM), not {options.mlm_weight!r}.")
    if not 0 < options.mlm_probability < 1:
        raise ConfigError(f"config.space2.mlm_probability must be in (0, 1), not {options.mlm_probability!r}.")
    if config.model.text.get("kind", "clip") != "bert" or config.model.text.pool != "first":
        raise ConfigError(
            "SPACE-2 encodes each utterance by its first token through a bidirectional encoder; set "
            "config.model.text.kind='bert' and config.model.text.pool='first' (configs/space2.py)."
        )
