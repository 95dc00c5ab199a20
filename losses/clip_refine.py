"""CLIP-Refine (Yamaguchi et al., CVPR 2025): post-pre-training that narrows the modality gap (METHODS.md 6).

From a pretrained CLIP and a frozen copy of it (the teacher), each step minimises
    L = λ_cont L_CLIP + λ_rand L_RaFA + λ_kd L_HyCD        (defaults 0, 1, 1)
- RaFA (random feature alignment): one reference z ~ N(0, I) per pair, shared by its image and text,
  fresh each step; L_RaFA = mean((f - z)^2) + mean((g - z)^2) (element means, as the official code).
- HyCD (hybrid contrastive distillation): the teacher's image->text similarity distribution blended
  with the ground truth, q_i = α onehot(i) + (1 - α) softmax_j(t_ij / T), is the target of the
  student's, KL(q_i || softmax_j(s_ij / T)) T^2 averaged over rows; the same text->image; L_HyCD is
  the mean of both. α = 0.5, T = 1. With λ_cont = 0 the soft labels replace the CLIP loss.

!! Paper vs official code (METHODS.md): the official trainer runs both terms on the UN-normalised
projected features (`model.forward` in training mode) and its KD logits are raw dot products with
no logit scale. `features="raw"` (the default) follows the code: on our towers that is
`image_features` / `text_features` (before L2 normalisation). It is the only form that pins down
RaFA's scale: a N(0, I) reference has norm ~sqrt(D), which unit-norm embeddings can never reach,
and it is what produced the paper's numbers. `features="normalized"` is the reading of the paper's
notation: RaFA on the L2-normalised embeddings and KD logits exp(logit_scale) <f, g> with each
model's own (clamped) logit scale, the similarity distribution CLIP itself defines.

Implementations: HyCD is the shared primitive's soft-target cross-entropy (losses.contrastive
SoftTargets: teacher logits recomputed tile by tile, blended with the positive by α) minus the
blended target's entropy, a constant without gradient computed here in row blocks of
config.loss.tile_size (O(tile B) memory); the CLIP term is the primitive too, RaFA per example. All
run in config.loss.implementation; GradCache embeds student and (frozen) teacher features.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import xlogy

from configs.errors import ConfigError
from losses.contrastive import SoftTargets, contrastive_loss, implementation_options, resolve_tile_size
from losses.logit_scale import clamped_logit_scale

FEATURES = ("raw", "normalized")


def rafa_loss(image_features: jax.Array, text_features: jax.Array, reference: jax.Array) -> jax.Array:
    """[B, D] image and text features, [B, D] reference (one row per pair, shared by its image and text)
    -> mean((f - z)^2) + mean((g - z)^2), each an element mean (the official code's reduction)."""
    return jnp.mean(jnp.square(image_features - reference)) + jnp.mean(jnp.square(text_features - reference))


def blended_targets(teacher_logits: jax.Array, alpha: float, temperature: float) -> jax.Array:
    """[B, B'] teacher logits -> [B, B'] rows α onehot(i) + (1 - α) softmax(teacher_logits / T) (pair i in column i)."""
    onehot = jnp.eye(*teacher_logits.shape, dtype=teacher_logits.dtype)
    return alpha * onehot + (1.0 - alpha) * jax.nn.softmax(teacher_logits / temperature, axis=-1)


def soft_label_kl(student_logits: jax.Array, targets: jax.Array, temperature: float) -> jax.Array:
    """KL(targets_i || softmax(student_logits_i / T)) T^2 averaged over the B rows of [B, B'] (PyTorch batchmean)."""
    log_probs = jax.nn.log_softmax(student_logits / temperature, axis=-1)
    kl = jnp.sum(xlogy(targets, targets) - targets * log_probs, axis=-1)
    return jnp.mean(kl) * temperature**2


def hycd_loss(student_logits: jax.Array, teacher_logits: jax.Array, alpha: float, temperature: float) -> jax.Array:
    """[B, B] image-by-text logits of student and teacher -> 1/2 (L_{I->T} + L_{T->I}) with blended targets."""
    image_to_text = soft_label_kl(student_logits, blended_targets(teacher_logits, alpha, temperature), temperature)
    text_to_image = soft_label_kl(student_logits.T, blended_targets(teacher_logits.T, alpha, temperature), temperature)
    return 0.5 * (image_to_text + text_to_image)


def blended_target_entropy(
    rows: jax.Array, cols: jax.Array, logit_scale: jax.Array, alpha: float, block: int
) -> jax.Array:
    """Mean over rows i of the entropy of α onehot(i) + (1 - α) softmax_j(exp(logit_scale) <rows_i, cols_j>),
    rows [B, D], cols [B, D]; no gradient; `block` rows at a time (O(block B) memory)."""
    rows, cols, logit_scale = jax.lax.stop_gradient((rows, cols, logit_scale))
    count = rows.shape[0]
    block = min(block, count)
    pad = -count % block
    blocks = jnp.pad(rows, ((0, pad), (0, 0))).reshape(-1, block, rows.shape[1])
    index = jnp.arange(count + pad).reshape(-1, block)

    def entropy(args):
        x, i = args
        teacher = jax.nn.softmax((jnp.exp(logit_scale) * x) @ cols.T, axis=1)
        q = alpha * (i[:, None] == jnp.arange(cols.shape[0])[None, :]) + (1.0 - alpha) * teacher
        return -jnp.sum(xlogy(q, q), axis=1)

    return jnp.mean(jax.lax.map(entropy, (blocks, index)).reshape(-1)[:count])


def hycd_from_embeddings(
    image: jax.Array,
    text: jax.Array,
    teacher_image: jax.Array,
    teacher_text: jax.Array,
    logit_scale: jax.Array,
    teacher_logit_scale: jax.Array,
    alpha: float,
    temperature: float,
    **options,
) -> jax.Array:
    """hycd_loss of the logits exp(logit_scale) <image_i, text_j> and the teacher's alike, [B, D] each,
    on the shared primitive. options: contrastive_loss's implementation keywords."""
    shift = math.log(temperature)
    targets = SoftTargets(teacher_image, teacher_text, teacher_logit_scale - shift, alpha)
    cross_entropy, _ = contrastive_loss(image, text, logit_scale - shift, soft_targets=targets, **options)
    block = resolve_tile_size(options.get("tile_size", image.shape[0]))
    entropy = 0.5 * sum(
        blended_target_entropy(x, y, teacher_logit_scale - shift, alpha, block)
        for x, y in ((teacher_image, teacher_text), (teacher_text, teacher_image))
    )
    return (cross_entropy - entropy) * temperature**2


def _suffix(options) -> str:
    if options.features not in FEATURES:
        raise ValueError(f"Unknown config.clip_refine.features {options.features!r}; use one of {list(FEATURES)}.")
    return "features" if options.features == "raw" else "embedding"


def embed(params, batch, extra, rng, *, model, config) -> dict[str, jax.Array]:
    """Per-example [B, D]: the student's embeddings (and features), the frozen teacher's of the same kind."""
    del rng
    suffix = _suffix(config.clip_refine)
    out = model.apply({"params": params}, batch["image"], batch["text"])
    teacher = jax.lax.stop_gradient(model.apply({"params": extra["teacher"]}, batch["image"], batch["text"]))
    names = {f"{side}_{kind}" for side in ("image", "text") for kind in ("embedding", suffix)}
    return {name: out[name] for name in names} | {
        f"teacher_{side}": teacher[f"{side}_{suffix}"] for side in ("image", "text")
    }


def loss_from_embeddings(params, embeddings, batch, extra, rng, *, model, config):
    """The objective's loss from `embed`'s embeddings; options in config.clip_refine."""
    del batch
    options, implementation = config.clip_refine, implementation_options(config)
    suffix = _suffix(options)
    image, text = embeddings[f"image_{suffix}"], embeddings[f"text_{suffix}"]
    reference = jax.random.normal(rng, image.shape, image.dtype)
    rafa = rafa_loss(image, text, reference)
    logit_scale = clamped_logit_scale(model.apply({"params": params})["logit_scale"])
    if options.features == "raw":  # raw dot products, no scale
        student_scale = teacher_scale = jnp.zeros((), image.dtype)
    else:
        student_scale = logit_scale
        teacher_scale = clamped_logit_scale(jax.lax.stop_gradient(extra["teacher"]["logit_scale"]))
    hycd = hycd_from_embeddings(
        image, text, embeddings["teacher_image"], embeddings["teacher_text"], student_scale, teacher_scale,
        options.alpha, options.temperature, **implementation,
    )  # fmt: skip
    image_embedding, text_embedding = embeddings["image_embedding"], embeddings["text_embedding"]
    clip, metrics = contrastive_loss(image_embedding, text_embedding, logit_scale, **implementation)
    total = options.contrastive_weight * clip + options.rafa_weight * rafa + options.hycd_weight * hycd
    gap = jnp.linalg.norm(jnp.mean(image_embedding, 0) - jnp.mean(text_embedding, 0))
    metrics.update(clip_loss=clip, rafa_loss=rafa, hycd_loss=hycd, batch_modality_gap=gap)
    return total, metrics


def loss(params, batch, extra, rng, *, model, config):
    """The objective's loss; extra = {"teacher": frozen params}; options in config.clip_refine."""
    embeddings = embed(params, batch, extra, rng, model=model, config=config)
    return loss_from_embeddings(params, embeddings, batch, extra, rng, model=model, config=config)


def init_extra(params, config, inputs=None) -> dict:
    """The teacher: a frozen copy of the starting (loaded) params."""
    del config, inputs
    return {"teacher": jax.tree.map(jnp.copy, params)}


def validate(config) -> None:
    """Raises ConfigError, naming the key and the fix, for a CLIP-Refine option out of range."""
    options = config.clip_refine
    if options.features not in FEATURES:
        raise ConfigError(f"Unknown config.clip_refine.features {options.features!r}; use one of {list(FEATURES)}.")
    if not 0 <= options.alpha <= 1:
        raise ConfigError(f"config.clip_refine.alpha must be in [0, 1], not {options.alpha!r}.")
    if options.temperature <= 0:
        raise ConfigError(f"config.clip_refine.temperature must be positive, not {options.temperature!r}.")
