"""DreamLIP (Zheng et al. 2024): CLIP with sub-captions sampled from long captions.

Data: the long caption is split into sentences (on '\\n', '</s>' and '.'); per example per epoch
NUM_SUBCAPTIONS = M of them are drawn without replacement (with replacement when the caption has
fewer), as DreamLIP's data.py does with `num_text`. The shapes long captions hold 2-4 sentences (a
scene sentence and one per object), so M = 3 rather than the paper's 6; no sentence merging.

Loss, over image embeddings f_i, caption embeddings g_i, sub-caption embeddings t_im (B x M):
(a) CLIP on (image, caption);
(b) multi-positive: each image against all B M sub-captions, its own M positive;
(c) sub-caption-specific grouping (SGL): for sub-caption t of image b, a_p = min-max normalised
    <t, v_bp> over b's patch embeddings v_bp (projected, L2-normalised patch tokens), entries below
    sgl_threshold set to 0 (a negative threshold means 1/P), w_p = a_p / sum_p a_p, grouped
    embedding u_t = normalise(sum_p w_p v_bp); then symmetric InfoNCE between the B M sub-captions and
    their grouped embeddings, at the model's scale.
L = clip_scale L_clip + multipos_weight L_multipos + sgl_weight L_sgl.

Choices between the paper and the official code (zyf0619sjtu/DreamLIP open_clip/loss.py):
- (a) the code divides the CLIP loss by 2 * num_text where the paper has CLIP's 1/2: default the
  paper's (clip_scale 1); `dreamlip.code_clip_divisor=True` scales it by 1/M as the code does.
- (b) the paper describes a multi-positive contrastive loss; the code runs a circle loss (gamma 32,
  margin 0.25) on the cosines, divided by 10. Default `dreamlip.multipos="infonce"`, the paper's:
  L_i = -1/M sum_p log softmax(s f_i T^T)_p over the B M sub-captions; "circle" gives the code's
  (`circle_loss`, including the /10).
- (c) the threshold: the training script's default sgl_threshold 0.0 (the loss class's own default is
  0.1); after min-max normalisation 0.0 removes no patch but the least similar one, which is 0 anyway.
Sentences repeated across images (the scene sentence "The picture contains 2 objects ...") are
in-batch negatives of each other, as in the paper, which draws generic MLLM sentences too.

Config (configs/dreamlip.py, sub-config `dreamlip`): multipos, multipos_weight, sgl_weight,
sgl_threshold, code_clip_divisor, circle_gamma, circle_margin.

All three InfoNCE terms run on losses.contrastive.contrastive_loss in config.loss.implementation:
(b) as K = M positives per image in one direction, (c) as a batch of B M (sub-caption, grouped
embedding) pairs. The circle loss needs the whole B x B M cosine matrix: dense only (`dense_only`).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np

from configs.errors import ConfigError
from losses.contrastive import contrastive_loss, implementation_options
from losses.logit_scale import clamped_logit_scale
from models.two_tower import l2_normalize

NUM_SUBCAPTIONS = 3
MULTIPOS_KINDS = ("infonce", "circle")
CIRCLE_SCALE = 0.1  # the official code's "/10" on the circle loss


def split_sentences(long_caption: str) -> list[str]:
    """DreamLIP's split: on newlines, '</s>' and full stops; empty pieces dropped."""
    return [s.strip() for s in re.split(r"\n|</s>|\.", long_caption) if s.strip()]


def sample_subcaptions(long_caption: str, rng: np.random.Generator, num: int = NUM_SUBCAPTIONS) -> list[str]:
    """`num` sentences of the caption: without replacement, or with it when there are fewer than `num`."""
    sentences = split_sentences(long_caption)
    if not sentences:
        raise ValueError(f"The long caption {long_caption!r} has no sentence; give every record a non-empty one.")
    index = rng.choice(len(sentences), size=num, replace=len(sentences) < num)
    return [sentences[i] for i in index]


def dreamlip_fields(record: dict, rng: np.random.Generator, encode) -> dict[str, np.ndarray]:
    """{"subcaptions": int32 [NUM_SUBCAPTIONS, max_len]} sampled afresh per example per epoch."""
    return {"subcaptions": encode(sample_subcaptions(record["long_caption"], rng))}


def multipositive_infonce(image: jax.Array, subcaptions: jax.Array, scale: jax.Array, **options) -> jax.Array:
    """image [B, D], subcaptions [B, M, D] (normalised) -> mean over images of -1/M sum_p log softmax_p
    over the B M sub-captions of scale f T^T. options: contrastive_loss's implementation keywords."""
    loss, _ = contrastive_loss(image, subcaptions, jnp.log(scale), directions="image_to_text", **options)
    return loss


def circle_loss(image: jax.Array, subcaptions: jax.Array, *, gamma: float = 32.0, margin: float = 0.25) -> jax.Array:
    """The official code's multi-positive loss: a circle loss on cosines, times CIRCLE_SCALE.

    Per image: a_p = [1 + m - s_p]_+, a_n = [s_n + m]_+ (no gradient), and
    softplus(logsumexp_p(-gamma a_p (s_p - (1 - m))) + logsumexp_n(gamma a_n (s_n - m))); mean over images.
    """
    batch, m, dim = subcaptions.shape
    cosines = image @ subcaptions.reshape(batch * m, dim).T  # [B, B M]
    positive = jnp.repeat(jnp.eye(batch, dtype=bool), m, axis=1)
    alpha_p = jax.lax.stop_gradient(jax.nn.relu(1.0 + margin - cosines))
    alpha_n = jax.lax.stop_gradient(jax.nn.relu(cosines + margin))
    lowest = jnp.finfo(cosines.dtype).min
    positive_term = jnp.where(positive, -gamma * alpha_p * (cosines - (1.0 - margin)), lowest)
    negative_term = jnp.where(positive, lowest, gamma * alpha_n * (cosines - margin))
    per_image = jax.nn.softplus(jax.nn.logsumexp(positive_term, axis=1) + jax.nn.logsumexp(negative_term, axis=1))
    return CIRCLE_SCALE * jnp.mean(per_image)


def grouped_patch_embeddings(subcaptions: jax.Array, patches: jax.Array, threshold: float) -> jax.Array:
    """subcaptions [B, M, D], patches [B, P, D] (normalised) -> [B, M, D] normalised grouped embeddings."""
    similarity = jnp.einsum("bmd,bpd->bmp", subcaptions, patches)
    low = jnp.min(similarity, axis=-1, keepdims=True)
    high = jnp.max(similarity, axis=-1, keepdims=True)
    scaled = (similarity - low) / (high - low + 1e-6)
    if threshold < 0:
        threshold = 1.0 / patches.shape[1]
    scaled = jnp.where(scaled < threshold, 0.0, scaled)
    weights = scaled / (jnp.sum(scaled, axis=-1, keepdims=True) + 1e-6)
    return l2_normalize(jnp.einsum("bmp,bpd->bmd", weights, patches))


def sgl_loss(
    subcaptions: jax.Array, patches: jax.Array, logit_scale: jax.Array, threshold: float, **options
) -> jax.Array:
    """Symmetric InfoNCE between the B M sub-captions [B, M, D] and their grouped patch embeddings.
    options: contrastive_loss's implementation keywords."""
    grouped = grouped_patch_embeddings(subcaptions, patches, threshold)
    dim = subcaptions.shape[-1]
    loss, _ = contrastive_loss(grouped.reshape(-1, dim), subcaptions.reshape(-1, dim), logit_scale, **options)
    return loss


def dreamlip_embed(params, batch, extra, rng, *, model, config) -> dict[str, jax.Array]:
    """Per-example embeddings: image [B, D], patch [B, P, D], caption [B, D], sub-captions [B, M, D];
    caption and sub-captions share one text-tower pass."""
    del extra, rng, config
    batch_size, m, length = batch["subcaptions"].shape
    image = model.apply({"params": params}, batch["image"], patch_embeddings=True, method=model.encode_image)
    tokens = jnp.concatenate([batch["text"], batch["subcaptions"].reshape(batch_size * m, length)])
    text = model.apply({"params": params}, tokens, method=model.encode_text)["text_embedding"]
    return {
        "image_embedding": image["image_embedding"],
        "patch_embedding": image["patch_embedding"],
        "text_embedding": text[:batch_size],
        "subcaption_embedding": text[batch_size:].reshape(batch_size, m, -1),
    }


def dense_only(config) -> str | None:
    """Why config.dreamlip makes the objective dense-only, or None."""
    if config.dreamlip.multipos == "circle":
        return "dreamlip.multipos='circle' is a loss over the whole B x B M cosine matrix"
    return None


def dreamlip_loss_from_embeddings(params, embeddings, batch, extra, rng, *, model, config):
    """(a) + (b) + (c) of the module docstring from dreamlip_embed's embeddings."""
    del batch, extra, rng
    options, implementation = config.dreamlip, implementation_options(config)
    image, caption = embeddings["image_embedding"], embeddings["text_embedding"]
    subcaptions = embeddings["subcaption_embedding"]
    m = subcaptions.shape[1]
    logit_scale = clamped_logit_scale(model.apply({"params": params})["logit_scale"])

    clip_value, metrics = contrastive_loss(image, caption, logit_scale, **implementation)
    clip_scale = 1.0 / m if options.code_clip_divisor else 1.0
    if options.multipos == "infonce":
        multipos = multipositive_infonce(image, subcaptions, jnp.exp(logit_scale), **implementation)
    elif options.multipos == "circle":
        multipos = circle_loss(image, subcaptions, gamma=options.circle_gamma, margin=options.circle_margin)
    else:
        raise ValueError(f"Unknown dreamlip.multipos {options.multipos!r}; use one of {list(MULTIPOS_KINDS)}.")
    sgl = sgl_loss(subcaptions, embeddings["patch_embedding"], logit_scale, options.sgl_threshold, **implementation)
    loss = clip_scale * clip_value + options.multipos_weight * multipos + options.sgl_weight * sgl
    metrics.update(clip_loss=clip_value, multipos_loss=multipos, sgl_loss=sgl, temperature=1.0 / jnp.exp(logit_scale))
    return loss, metrics


def validate(config) -> None:
    """Raises ConfigError, naming the key and the fix, for an unknown multi-positive loss."""
    if config.dreamlip.multipos not in MULTIPOS_KINDS:
        raise ConfigError(
            f"Unknown config.dreamlip.multipos {config.dreamlip.multipos!r}; use one of {list(MULTIPOS_KINDS)}."
        )


def dreamlip_loss(params, batch, extra, rng, *, model, config):
    """(a) + (b) + (c) of the module docstring."""
    embeddings = dreamlip_embed(params, batch, extra, rng, model=model, config=config)
    return dreamlip_loss_from_embeddings(params, embeddings, batch, extra, rng, model=model, config=config)
