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

Implementations: the global term runs on losses.contrastive.contrastive_loss in
config.loss.implementation with the B K negatives as a shared `text_bank` of every image row (row-local
work, O(B B K) spread over the devices; their gradient flows back through the bank); IGC, TGC and the
distillation are per example. GradCache embeds all T negatives of every example (the draw needs the
step's rng, which micro-batches do not share) and the loss takes the K drawn ones.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from configs.errors import ConfigError
from losses.contrastive import contrastive_loss, implementation_options
from losses.extra_negatives import NegativeBank
from losses.logit_scale import clamped_logit_scale

TGC_NEGATIVES = ("own", "official_code")


def negclip_loss(
    image_embedding: jax.Array,
    text_embedding: jax.Array,
    negative_embedding: jax.Array,
    logit_scale: jax.Array,
    **options,
) -> jax.Array:
    """[B, D] images, [B, D] captions, [N, D] extra negative captions ->
    1/2 [CE(s F [G; N]^T, i) + CE(s G F^T, i)]; `logit_scale` is log s; options: contrastive_loss's
    implementation keywords."""
    bank = NegativeBank(negative_embedding)
    loss, _ = contrastive_loss(image_embedding, text_embedding, logit_scale, text_bank=bank, **options)
    return loss


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


def _draw(values: jax.Array, k: int, rng: jax.Array) -> jax.Array:
    """[B, T, ...] -> [B, k, ...]: k of each example's T entries, uniformly without replacement; the
    same entries for the same rng and [B, T], whatever the trailing shape."""
    if not 1 <= k <= values.shape[1]:
        raise ValueError(f"config.degla.num_negatives must be in 1..{values.shape[1]}, not {k}.")
    order = jnp.argsort(jax.random.uniform(rng, values.shape[:2]), axis=1)[:, :k]
    return jnp.take_along_axis(values, order.reshape(*order.shape, *[1] * (values.ndim - 2)), axis=1)


def draw_negatives(tokens: jax.Array, k: int, rng: jax.Array) -> jax.Array:
    """[B, T, L] -> [B, k, L]: k of each example's T captions, drawn uniformly without replacement."""
    return _draw(tokens, k, rng)


def _embed(params, batch, extra, negatives: jax.Array, *, model) -> dict[str, jax.Array]:
    """Student and teacher embeddings of the images [B, D], captions [B, D] and negatives [B, N, D]
    (negatives: int32 [B, N, L] tokens)."""
    batch_size, n, length = negatives.shape
    tokens = jnp.concatenate([batch["text"], negatives.reshape(batch_size * n, length)])
    out = model.apply({"params": params}, batch["image"], tokens)
    teacher = jax.lax.stop_gradient(model.apply({"params": extra["teacher"]}, batch["image"], tokens))
    embeddings = {}
    for prefix, source in (("", out), ("teacher_", teacher)):
        texts = source["text_embedding"]
        embeddings[f"{prefix}image_embedding"] = source["image_embedding"]
        embeddings[f"{prefix}text_embedding"] = texts[:batch_size]
        embeddings[f"{prefix}negative_embedding"] = texts[batch_size:].reshape(batch_size, n, -1)
    return embeddings


def _loss_from_drawn(params, embeddings, *, model, config):
    """The objective's loss from _embed's embeddings of the K drawn negatives."""
    options = config.degla
    image, text, per_example = (embeddings[k] for k in ("image_embedding", "text_embedding", "negative_embedding"))
    batch_size, k, dim = per_example.shape
    negatives = per_example.reshape(batch_size * k, dim)
    logit_scale = clamped_logit_scale(model.apply({"params": params})["logit_scale"])
    global_loss = negclip_loss(image, text, negatives, logit_scale, **implementation_options(config))
    igc = grounded_loss(image, text, per_example, jnp.exp(logit_scale))
    tgc_negatives = per_example if options.tgc_negatives == "own" else official_tgc_negatives(per_example)
    tgc = grounded_loss(text, embeddings["teacher_text_embedding"], tgc_negatives, options.tgc_scale)
    teacher_texts = [embeddings["teacher_text_embedding"], embeddings["teacher_negative_embedding"].reshape(-1, dim)]
    distill = distillation_loss([image, text, negatives], [embeddings["teacher_image_embedding"], *teacher_texts])
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


def embed(params, batch, extra, rng, *, model, config) -> dict[str, jax.Array]:
    """Student and teacher embeddings of the images, captions and ALL T hard negatives [B, T, D]."""
    del rng
    return _embed(params, batch, extra, batch["hard_negatives"], model=model)


def loss_from_embeddings(params, embeddings, batch, extra, rng, *, model, config):
    """The objective's loss from `embed`'s embeddings: the K negatives drawn as `loss` draws them."""
    del batch, extra
    k = config.degla.num_negatives
    drawn = {key: _draw(value, k, rng) if "negative" in key else value for key, value in embeddings.items()}
    return _loss_from_drawn(params, drawn, model=model, config=config)


def loss(params, batch, extra, rng, *, model, config):
    """The objective's loss; batch["hard_negatives"] int32 [B, T, L]; extra = {"teacher": EMA params}."""
    drawn = draw_negatives(batch["hard_negatives"], config.degla.num_negatives, rng)
    return _loss_from_drawn(params, _embed(params, batch, extra, drawn, model=model), model=model, config=config)


def init_extra(params, config, inputs=None) -> dict:
    """The teacher starts as a copy of the starting (loaded) params."""
    del config, inputs
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
