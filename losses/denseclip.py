"""DenseCLIP (Rao et al. 2022, "Language-Guided Dense Prediction with Context-Aware Prompting"; METHODS.md 16):
segmentation from CLIP's dense features, guided by pixel-text score maps.

The image tower's patch tokens through the image projection are the dense features z [B, h, w, D]; the class
names, each prompted as [start][P learnable context vectors][name][end], go through the (frozen) text tower to
t_k; post-model prompting updates them per image, t <- t + gamma ContextDecoder(t, [z_global; z]) (gamma init
1e-4), pre-model prompting makes the context vectors from the image instead (models/dense_heads.py,
models/two_tower.py `segment`). The score map S = <normalize(z), normalize(t_k)> [B, h, w, K] is concatenated to
the dense features that the segmentation head reads. With y the per-pixel classes [B, H, W]:
    L = CE(upsample(head logits), y) + aux_weight CE(upsample(S / temperature), y) + clip_weight L_CLIP,
each CE the mean over the pixels not labelled IGNORE, upsampling bilinear to the label's H x W (the official
IdentityHead: aux_weight 0.4, temperature 0.07). L_CLIP, the symmetric image-caption InfoNCE on the shared
primitive (losses.contrastive), is off by default (clip_weight 0: the paper fine-tunes a trained CLIP); it lets a
run train CLIP and the dense heads together. The pixel terms are per example, so the objective runs in every
loss implementation and under GradCache.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from configs.errors import ConfigError
from losses.contrastive import contrastive_loss, implementation_options
from losses.logit_scale import clamped_logit_scale
from models.dense_heads import PROMPTINGS, upsample

IGNORE = 255  # input_pipeline/segmentation.py IGNORE: pixels without a class


def pixel_cross_entropy(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(mean CE, pixel accuracy) over the labelled pixels: logits [B, h, w, K] upsampled bilinearly to labels
    [B, H, W] (IGNORE: not counted); 0 for both when no pixel is labelled."""
    logits = upsample(logits, *labels.shape[1:])
    valid = labels != IGNORE
    safe = jnp.where(valid, labels, 0)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(log_p, safe[..., None], axis=-1)[..., 0]
    count = jnp.maximum(jnp.sum(valid), 1)
    correct = valid & (jnp.argmax(logits, axis=-1) == labels)
    return jnp.sum(jnp.where(valid, nll, 0.0)) / count, jnp.sum(correct) / count


def init_extra(params, config, inputs=None) -> dict:
    """{"class_tokens": int32 [K, L]}: the class names' tokens (training/objective_inputs.py)."""
    del params, config
    if not inputs or "class_tokens" not in inputs:
        raise ValueError(
            "DenseCLIP needs its class names' tokens: make them with training.objective_inputs.prepare_inputs "
            "(passing the run's tokenizer) and pass them to init_extra."
        )
    return {"class_tokens": jnp.asarray(inputs["class_tokens"])}


def embed(params, batch, extra, rng, *, model, config) -> dict[str, jax.Array]:
    """Per example: image [B, D], score map [B, h, w, K], head logits [B, h', w', K], and the caption [B, D] when
    clip_weight > 0."""
    del rng
    variables = {"params": params}
    out = model.apply(variables, batch["image"], extra["class_tokens"], method=model.segment)
    if config.denseclip.clip_weight:
        out["text_embedding"] = model.apply(variables, batch["text"], method=model.encode_text)["text_embedding"]
    return out


def loss_from_embeddings(params, embeddings, batch, extra, rng, *, model, config):
    """seg CE + aux_weight pixel-text CE (+ clip_weight L_CLIP) (module docstring)."""
    del extra, rng
    options, labels = config.denseclip, batch["segmentation"]
    seg_value, seg_accuracy = pixel_cross_entropy(embeddings["seg_logits"], labels)
    aux_value, aux_accuracy = pixel_cross_entropy(embeddings["score_map"] / options.temperature, labels)
    loss = seg_value + options.aux_weight * aux_value
    metrics = dict(seg_loss=seg_value, pixel_accuracy=seg_accuracy, aux_loss=aux_value, score_accuracy=aux_accuracy)
    if options.clip_weight:
        logit_scale = clamped_logit_scale(model.apply({"params": params})["logit_scale"])
        clip_value, clip_metrics = contrastive_loss(
            embeddings["image_embedding"], embeddings["text_embedding"], logit_scale, **implementation_options(config)
        )
        loss = loss + options.clip_weight * clip_value
        metrics.update(clip_metrics, clip_loss=clip_value)
    return loss, metrics


def validate(config) -> None:
    """Raises ConfigError, naming the key and the fix, for DenseCLIP options the run cannot train with."""
    d = config.denseclip
    if d.prompting not in PROMPTINGS:
        raise ConfigError(f"Unknown config.denseclip.prompting {d.prompting!r}; use one of {list(PROMPTINGS)}.")
    for key in ("context_tokens", "decoder_depth", "decoder_width", "decoder_heads", "head_width", "temperature"):
        if d[key] <= 0:
            raise ConfigError(f"config.denseclip.{key} must be positive, not {d[key]!r}.")
    for key in ("aux_weight", "clip_weight"):
        if d[key] < 0:
            raise ConfigError(f"config.denseclip.{key} must be at least 0, not {d[key]!r}.")
    if d.decoder_width % d.decoder_heads:
        raise ConfigError(
            f"config.denseclip.decoder_width ({d.decoder_width}) is not divisible by config.denseclip.decoder_heads "
            f"({d.decoder_heads}); choose a head count that divides the width."
        )
    room = config.model.text.max_len - d.context_tokens
    if room < 3:
        raise ConfigError(
            f"config.denseclip.context_tokens ({d.context_tokens}) leaves {room} of config.model.text.max_len "
            f"({config.model.text.max_len}) tokens for the start, a class name and the end; lower it below "
            f"{config.model.text.max_len - 2}."
        )
    if config.model.text.kind != "clip":
        raise ConfigError(
            f"DenseCLIP's prompt context goes into the clip text tower, not config.model.text.kind="
            f"{config.model.text.kind!r}; set config.model.text.kind='clip'."
        )
    if tuple(config.data.crop_scale) != (1.0, 1.0):
        raise ConfigError(
            f"DenseCLIP's masks do not follow a random crop; set config.data.crop_scale=(1.0, 1.0), not "
            f"{tuple(config.data.crop_scale)}."
        )
