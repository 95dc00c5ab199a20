"""X-CLIP (Ni et al. 2022, "Expanding Language-Image Pretrained Models for General Video Recognition";
METHODS.md 14): video-text contrastive learning on the image tower with cross-frame messages, the multi-frame
integration transformer and video-specific prompting (models/video.py).

Each example is a clip `video` [T, H, W, 3] (T = config.model.video_frames) with its caption and up to
MAX_NEGATIVES hard-negative captions, false for the clip (on the shapes_video data: the caption with each other
motion). With s the clamped logit scale:
- L_video: symmetric InfoNCE between each clip's video embedding and its caption over the (global) batch, on
  losses.contrastive.contrastive_loss in config.loss.implementation (every implementation, GradCache); clips
  whose captions are the same string are not each other's negatives (shapes_video's captions often repeat);
- L_prompt: X-CLIP's own objective, cross-entropy of s cos(video, prompted text) over the clip's candidates
  (its caption first, then its hard negatives), each text prompted by that clip's visual tokens.
L = L_video + prompt_weight L_prompt.

Where we depart from the paper: X-CLIP trains only the prompted cross-entropy over a fixed set of class names.
A prompted text depends on the pair (clip, text), so in-batch logits would cost B^2 prompt passes and could not
be blocked like the shared primitive's implementations; the batch-wide term therefore pairs clips with the
unprompted captions, and prompting runs over each clip's own few candidates (O(B C), any implementation).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from configs.common import VIDEO_DATASETS
from configs.errors import ConfigError
from losses.cloc import caption_group
from losses.contrastive import contrastive_loss, implementation_options
from losses.logit_scale import clamped_logit_scale

MAX_NEGATIVES = 5  # hard negatives per clip (shapes_video's other motions); a record's further ones are not used


def negative_fields(record: dict, rng: np.random.Generator, encode) -> dict[str, np.ndarray]:
    """{"negative_text" int32 [MAX_NEGATIVES, max_len], "negative_valid" bool [MAX_NEGATIVES]}: the record's
    hard-negative captions, absent ones empty and invalid (a clip without any brings none); "caption_group"
    int32: a hash of the caption (clips of one caption string are not each other's negatives)."""
    del rng
    negatives = [str(c) for c in record.get("hard_negatives", ()) if c][:MAX_NEGATIVES]
    return {
        "caption_group": np.int32(caption_group(record["caption"])),
        "negative_text": encode(negatives + [""] * (MAX_NEGATIVES - len(negatives))),
        "negative_valid": np.arange(MAX_NEGATIVES) < len(negatives),
    }


def embed(params, batch, extra, rng, *, model, config) -> dict[str, jax.Array]:
    """Per clip: video [B, D], its visual tokens [B, N, D], caption [B, D] and the features (unnormalised, as
    the prompt takes them) of the caption and its hard negatives [B, 1 + MAX_NEGATIVES, D]; one text-tower pass."""
    del extra, rng, config
    variables = {"params": params}
    video = model.apply(variables, batch["video"], method=model.encode_video)
    batch_size, negatives, length = batch["negative_text"].shape
    tokens = jnp.concatenate([batch["text"], batch["negative_text"].reshape(batch_size * negatives, length)])
    text = model.apply(variables, tokens, method=model.encode_text)
    features = text["text_features"]
    candidates = jnp.concatenate(
        [features[:batch_size, None], features[batch_size:].reshape(batch_size, negatives, -1)], 1
    )
    return {
        "video_embedding": video["video_embedding"],
        "video_tokens": video["video_tokens"],
        "text_embedding": text["text_embedding"][:batch_size],
        "candidate_features": candidates,
    }


def prompted_logits(params, embeddings, *, model) -> jax.Array:
    """[B, C] cos(video, prompted candidate) of each clip's own candidates (unscaled)."""
    prompted = model.apply(
        {"params": params}, embeddings["candidate_features"], embeddings["video_tokens"], method=model.prompt_text
    )
    return jnp.einsum("bd,bcd->bc", embeddings["video_embedding"], prompted)


def loss_from_embeddings(params, embeddings, batch, extra, rng, *, model, config):
    """L_video + prompt_weight L_prompt (module docstring)."""
    del extra, rng
    logit_scale = clamped_logit_scale(model.apply({"params": params})["logit_scale"])
    video_value, metrics = contrastive_loss(
        embeddings["video_embedding"],
        embeddings["text_embedding"],
        logit_scale,
        group=batch["caption_group"],
        **implementation_options(config),
    )
    logits = jnp.exp(logit_scale) * prompted_logits(params, embeddings, model=model)
    valid = jnp.concatenate([jnp.ones_like(batch["negative_valid"][:, :1]), batch["negative_valid"]], axis=1)
    logits = jnp.where(valid, logits, -jnp.inf)
    prompt_value = jnp.mean(jax.nn.logsumexp(logits, axis=1) - logits[:, 0])
    metrics.update(
        video_loss=video_value,
        prompt_loss=prompt_value,
        prompt_accuracy=jnp.mean(jnp.argmax(logits, axis=1) == 0),
        temperature=1.0 / jnp.exp(logit_scale),
    )
    return video_value + config.xclip.prompt_weight * prompt_value, metrics


def loss(params, batch, extra, rng, *, model, config):
    embeddings = embed(params, batch, extra, rng, model=model, config=config)
    return loss_from_embeddings(params, embeddings, batch, extra, rng, model=model, config=config)


def validate(config) -> None:
    """Raises ConfigError, naming the key and the fix, for X-CLIP options the run cannot train with."""
    if config.xclip.prompt_weight < 0:
        raise ConfigError(f"config.xclip.prompt_weight must be at least 0, not {config.xclip.prompt_weight!r}.")
    if config.model.video_frames < 2:
        raise ConfigError(
            f"X-CLIP needs clips of config.model.video_frames >= 2 frames (configs/xclip.py sets 4), not "
            f"{config.model.video_frames}."
        )
    if config.data.name not in VIDEO_DATASETS:
        raise ConfigError(
            f"X-CLIP trains on clips; set config.data.name='shapes_video' (the embedded clips) or 'video_folders' "
            f"(yours, docs/video.md), not {config.data.name!r}."
        )
