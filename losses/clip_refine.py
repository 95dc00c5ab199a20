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
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import xlogy

from configs.errors import ConfigError
from losses.contrastive import contrastive_loss
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


def _pair_logits(out: dict, features: str) -> jax.Array:
    if features == "raw":
        return out["image_features"] @ out["text_features"].T
    scale = jnp.exp(clamped_logit_scale(out["logit_scale"]))
    return scale * out["image_embedding"] @ out["text_embedding"].T


def loss(params, batch, extra, rng, *, model, config):
    """The objective's loss; extra = {"teacher": frozen params}; options in config.clip_refine."""
    options = config.clip_refine
    out = model.apply({"params": params}, batch["image"], batch["text"])
    teacher = jax.lax.stop_gradient(model.apply({"params": extra["teacher"]}, batch["image"], batch["text"]))
    suffix = "features" if options.features == "raw" else "embedding"
    image, text = out[f"image_{suffix}"], out[f"text_{suffix}"]
    reference = jax.random.normal(rng, image.shape, image.dtype)
    rafa = rafa_loss(image, text, reference)
    hycd = hycd_loss(
        _pair_logits(out, options.features), _pair_logits(teacher, options.features), options.alpha, options.temperature
    )
    logit_scale = clamped_logit_scale(out["logit_scale"])
    clip, metrics = contrastive_loss(out["image_embedding"], out["text_embedding"], logit_scale, kind="softmax")
    total = options.contrastive_weight * clip + options.rafa_weight * rafa + options.hycd_weight * hycd
    gap = jnp.linalg.norm(jnp.mean(out["image_embedding"], 0) - jnp.mean(out["text_embedding"], 0))
    metrics.update(clip_loss=clip, rafa_loss=rafa, hycd_loss=hycd, batch_modality_gap=gap)
    return total, metrics


def init_extra(params, config) -> dict:
    """The teacher: a frozen copy of the starting (loaded) params."""
    del config
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
