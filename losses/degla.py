"""DeGLA (Hu, Yang et al., ACM MM 2025): decoupled global-local alignment with hard-negative captions (METHODS.md 5).

Each example brings K hard-negative captions: K of the shapes record's rule-based perturbations
(one per shapes.HARD_NEGATIVE_TYPES entry), drawn per example per step. An EMA copy of the model
(momentum 0.9996, updated after every step) is the teacher. With f / g the student's normalised image / caption
embeddings, n_{i,k} those of example i's negatives and s the clamped logit scale:
- global, NegCLIP-style: image->text CE over all B captions and B K negatives, text->image CE over
  the B images; L_g = 1/2 (CE_i2t + CE_t2i);
- IGC (image-grounded contrast): CE(s [f_i.g_i, f_i.n_{i,1..K}], 0), each image against its own
  caption and its own negatives only;
- TGC (text-grounded contrast): CE(10 [g_i.g^T_i, g_i.n_{i,1..K}], 0), the teacher's embedding of
  the same caption as the positive, a fixed scale 10 (tau = 0.1);
- self-distillation: sum of squared differences between student and teacher embeddings of the
  images, captions and negatives (MSE with reduction "sum");
L = L_g + 0.1 L_IGC + 0.1 L_TGC + 0.005 L_dist.

!! Official code caveat (METHODS.md): the official TGC mask is `eye(B).repeat(1, K)`, a block layout,
while the negatives are stored per example (example i's at i K .. i K + K - 1), so row i is scored
against the flat negatives i, i + B, ..., i + (K - 1) B, which mostly belong to other examples.
`tgc_negatives="own"` (the default) is the paper's intent: each caption against its own negatives.
`tgc_negatives="official_code"` reproduces the code's selection (`official_tgc_negatives`), only to
reproduce its numbers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from configs.errors import ConfigError
from losses.logit_scale import clamped_logit_scale

TGC_NEGATIVES = ("own", "official_code")


def negclip_loss(
    image_embedding: jax.Array, text_embedding: jax.Array, negative_embedding: jax.Array, logit_scale: jax.Array
) -> jax.Array:
    """[B, D] images, [B, D] captions, [N, D] extra negative captions ->
    1/2 [CE(s F [G; N]^T, i) + CE(s G F^T, i)]; `logit_scale` is log s."""
    scale = jnp.exp(logit_scale)
    positives = scale * jnp.sum(image_embedding * text_embedding, axis=-1)
    image_to_text = scale * image_embedding @ jnp.concatenate([text_embedding, negative_embedding]).T
    text_to_image = scale * text_embedding @ image_embedding.T
    row = jax.nn.logsumexp(image_to_text, axis=-1) - positives
    column = jax.nn.logsumexp(text_to_image, axis=-1) - positives
    return 0.5 * (jnp.mean(row) + jnp.mean(column))


def grounded_loss(anchor: jax.Array, positive: jax.Array, negatives: jax.Array, scale: jax.Array) -> jax.Array:
    """[B, D] anchors, [B, D] positives, [B, K, D] each anchor's own negatives ->
    mean_i CE(scale [a_i.p_i, a_i.n_{i,1..K}], 0) (IGC and TGC)."""
    logits = scale * jnp.concatenate(
        [jnp.sum(anchor * positive, axis=-1)[:, None], jnp.einsum("bd,bkd->bk", anchor, negatives)], axis=-1
    )
    return jnp.mean(jax.nn.logsumexp(logits, axis=-1) - logits[:, 0])


def official_tgc_negatives(negatives: jax.Array) -> jax.Array:
    """[B, K, D] per-example negatives -> [B, K, D] the ones the official TGC mask picks for each row:
    flat negatives i + k B (k < K) of the per-example layout, i.e. of example (i + k B) // K."""
    batch, k = negatives.shape[:2]
    flat = negatives.reshape(batch * k, *negatives.shape[2:])
    return flat[jnp.arange(batch)[:, None] + batch * jnp.arange(k)[None, :]]


def distillation_loss(student: list[jax.Array], teacher: list[jax.Array]) -> jax.Array:
    """Sum over the paired [.., D] arrays of the summed squared difference (MSE, reduction "sum")."""
    return sum(jnp.sum(jnp.square(s - t)) for s, t in zip(student, teacher, strict=True))


def ema_update(teacher, student, momentum: float):
    """teacher <- momentum teacher + (1 - momentum) student, leaf by leaf."""
    return jax.tree.map(lambda t, s: momentum * t + (1.0 - momentum) * s, teacher, student)


def batch_fields(record, rng: np.random.Generator, encode) -> dict[str, np.ndarray]:
    """{"hard_negatives": int32 [T, L]}: every hard-negative caption of the record (T types); the loss draws K."""
    del rng
    return {"hard_negatives": encode(list(record["hard_negatives"]))}


def draw_negatives(tokens: jax.Array, k: int, rng: jax.Array) -> jax.Array:
    """[B, T, L] -> [B, k, L]: k of each example's T captions, drawn uniformly without replacement."""
    if not 1 <= k <= tokens.shape[1]:
        raise ValueError(f"config.degla.num_negatives must be in 1..{tokens.shape[1]}, not {k}.")
    order = jnp.argsort(jax.random.uniform(rng, tokens.shape[:2]), axis=1)[:, :k]
    return jnp.take_along_axis(tokens, order[:, :, None], axis=1)


def loss(params, batch, extra, rng, *, model, config):
    """The objective's loss; batch["hard_negatives"] int32 [B, T, L]; extra = {"teacher": EMA params}."""
    options = config.degla
    drawn = draw_negatives(batch["hard_negatives"], options.num_negatives, rng)
    batch_size, k, length = drawn.shape
    tokens = jnp.concatenate([batch["text"], drawn.reshape(batch_size * k, length)])
    out = model.apply({"params": params}, batch["image"], tokens)
    teacher = jax.lax.stop_gradient(model.apply({"params": extra["teacher"]}, batch["image"], tokens))
    image, texts = out["image_embedding"], out["text_embedding"]
    text, negatives = texts[:batch_size], texts[batch_size:]
    logit_scale = clamped_logit_scale(out["logit_scale"])
    per_example = negatives.reshape(batch_size, k, -1)
    global_loss = negclip_loss(image, text, negatives, logit_scale)
    igc = grounded_loss(image, text, per_example, jnp.exp(logit_scale))
    tgc_negatives = per_example if options.tgc_negatives == "own" else official_tgc_negatives(per_example)
    tgc = grounded_loss(text, teacher["text_embedding"][:batch_size], tgc_negatives, options.tgc_scale)
    distill = distillation_loss([image, texts], [teacher["image_embedding"], teacher["text_embedding"]])
    total = global_loss + options.igc_weight * igc + options.tgc_weight * tgc + options.distillation_weight * distill
    metrics = {
        "global_loss": global_loss,
        "igc_loss": igc,
        "tgc_loss": tgc,
        "distillation_loss": distill,
        "temperature": 1.0 / jnp.exp(logit_scale),
        # How often the image scores its caption above all of its own hard negatives.
        "hard_negative_accuracy": jnp.mean(
            jnp.sum(image * text, -1) > jnp.max(jnp.einsum("bd,bkd->bk", image, per_example), -1)
        ),
        # update_extra sees no config: the loss hands it the teacher's momentum.
        "aux": {"ema_momentum": jnp.asarray(options.ema_momentum, jnp.float32)},
    }
    return total, metrics


def init_extra(params, config) -> dict:
    """The teacher starts as a copy of the starting (loaded) params."""
    del config
    return {"teacher": jax.tree.map(jnp.copy, params)}


def update_extra(extra, params, aux) -> dict:
    """The EMA step of the teacher towards the freshly updated params, momentum from the loss's aux."""
    return {"teacher": ema_update(extra["teacher"], params, aux["ema_momentum"])}


def validate(config) -> None:
    """Raises ConfigError, naming the key and the fix, for a DeGLA option out of range (num_negatives above
    the records' hard negatives is found by draw_negatives, from the batch's shape)."""
    options = config.degla
    if options.tgc_negatives not in TGC_NEGATIVES:
        raise ConfigError(
            f"Unknown config.degla.tgc_negatives {options.tgc_negatives!r}; use one of {list(TGC_NEGATIVES)}."
        )
    if options.num_negatives < 1:
        raise ConfigError(f"config.degla.num_negatives must be at least 1, not {options.num_negatives!r}.")
    if not 0 <= options.ema_momentum < 1:
        raise ConfigError(f"config.degla.ema_momentum must be in [0, 1), not {options.ema_momentum!r}.")
