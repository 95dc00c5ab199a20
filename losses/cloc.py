"""CLOC (Chen et al. 2025, "Contrastive Localized Language-Image Pre-training"; METHODS.md 12): CLIP plus
promptable region embeddings and a grounding head.

Each example brings up to MAX_REGIONS regions: a box (x0, y0, x1, y1 in [0, 1]) and a region caption
("<size> <colour> <shape>" on the shapes data; the record fields `boxes` and `region_captions`). The box
prompts the prompter over the image tower's patch tokens (models/region_heads.py) into a region embedding;
the grounding head turns a region caption's embedding and the patch tokens into a box. With s the clamped
logit scale:
- L_CLIP: symmetric InfoNCE on (image, caption), as configs/clip.py;
- L_region: symmetric InfoNCE between every region of the (global) batch, B R of them with absent regions
  left out, and its region caption; regions whose captions are the same string are not each other's
  negatives (`group`: a hash of the caption);
- L_ground: for each region whose caption names one object of its image alone, the box the grounding
  head finds from that caption: l1_weight |b - b*|_1 + giou_weight (1 - GIoU(b, b*)), DETR's box loss
  (weights 5 and 2), averaged over those regions.
L = L_CLIP + region_weight L_region + grounding_weight L_ground.

No official code exists (METHODS.md); the prompter is the toy form the notes sketch (box Fourier features
as a query, cross-attention over the patch tokens), the loss weights are not from the paper (not
retrieved). Both InfoNCE terms run on losses.contrastive.contrastive_loss in config.loss.implementation;
the grounding term is per region. The image stays uncropped (config.data.crop_scale (1, 1)) so that the
boxes hold.
"""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import numpy as np

from configs.errors import ConfigError
from losses.contrastive import contrastive_loss, implementation_options
from losses.logit_scale import clamped_logit_scale

MAX_REGIONS = 3  # regions per example: the shapes data's objects; a record's regions past these are not used


def caption_group(caption: str) -> int:
    """A non-negative int32 id of the caption string (equal strings, equal ids)."""
    return zlib.crc32(caption.encode("utf-8")) & 0x7FFFFFFF


def region_fields(record: dict, rng: np.random.Generator, encode) -> dict[str, np.ndarray]:
    """{"region_boxes" float32 [R, 4], "region_text" int32 [R, max_len], "region_valid" bool [R],
    "region_group" int32 [R], "ground_valid" bool [R]} with R = MAX_REGIONS, absent regions zero (a record
    without regions, as a WebDataset sample whose json has none, brings none)."""
    del rng
    captions = [str(c) for c in record.get("region_captions", ())][:MAX_REGIONS]
    boxes = np.zeros((MAX_REGIONS, 4), np.float32)
    given = np.asarray(record.get("boxes", np.zeros((0, 4))), np.float32).reshape(-1, 4)[: len(captions)]
    if len(given) < len(captions):
        raise ValueError(f"A record has {len(captions)} region captions but {len(given)} boxes; give one box each.")
    boxes[: len(captions)] = given
    count = len(captions)
    valid = np.arange(MAX_REGIONS) < count
    unique = np.array([i < count and captions.count(captions[i]) == 1 for i in range(MAX_REGIONS)])
    return {
        "region_boxes": boxes,
        "region_text": encode(captions + [""] * (MAX_REGIONS - count)),
        "region_valid": valid,
        "region_group": np.array([caption_group(c) for c in captions] + [-1] * (MAX_REGIONS - count), np.int32),
        "ground_valid": valid & unique,
    }


def box_area(boxes: jax.Array) -> jax.Array:
    return jnp.prod(jnp.clip(boxes[..., 2:] - boxes[..., :2], 0.0), axis=-1)


def generalized_iou(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(IoU, GIoU) of boxes [..., 4] and [..., 4] (x0, y0, x1, y1): GIoU = IoU - (C - U) / C with C the
    area of the smallest box enclosing both (Rezatofighi et al. 2019)."""
    inter = box_area(jnp.concatenate([jnp.maximum(a[..., :2], b[..., :2]), jnp.minimum(a[..., 2:], b[..., 2:])], -1))
    union = box_area(a) + box_area(b) - inter
    hull = box_area(jnp.concatenate([jnp.minimum(a[..., :2], b[..., :2]), jnp.maximum(a[..., 2:], b[..., 2:])], -1))
    iou = inter / jnp.maximum(union, 1e-9)
    return iou, iou - (hull - union) / jnp.maximum(hull, 1e-9)


def grounding_loss(
    predicted: jax.Array, target: jax.Array, valid: jax.Array, l1_weight: float, giou_weight: float
) -> tuple[jax.Array, jax.Array]:
    """(loss, IoU >= 0.5 rate) over the valid regions of boxes [B, R, 4]; 0 when none is valid."""
    l1 = jnp.sum(jnp.abs(predicted - target), axis=-1)
    iou, giou = generalized_iou(predicted, target)
    per_region = l1_weight * l1 + giou_weight * (1.0 - giou)
    count = jnp.maximum(jnp.sum(valid), 1)
    return jnp.sum(jnp.where(valid, per_region, 0.0)) / count, jnp.sum(valid & (iou >= 0.5)) / count


def embed(params, batch, extra, rng, *, model, config) -> dict[str, jax.Array]:
    """Per example: image [B, D], caption [B, D], regions [B, R, D], region captions [B, R, D], grounded boxes
    [B, R, 4]; captions and region captions share one text-tower pass."""
    del extra, rng, config
    variables = {"params": params}
    image = model.apply(variables, batch["image"], method=model.encode_image)
    batch_size, regions, length = batch["region_text"].shape
    tokens = jnp.concatenate([batch["text"], batch["region_text"].reshape(batch_size * regions, length)])
    text = model.apply(variables, tokens, method=model.encode_text)["text_embedding"]
    region_text = text[batch_size:].reshape(batch_size, regions, -1)
    tokens_of_patches = image["image_tokens"]
    return {
        "image_embedding": image["image_embedding"],
        "text_embedding": text[:batch_size],
        "region_embedding": model.apply(
            variables, tokens_of_patches, batch["region_boxes"], method=model.encode_regions
        ),
        "region_text_embedding": region_text,
        "grounded_box": model.apply(variables, tokens_of_patches, region_text, method=model.ground),
    }


def loss_from_embeddings(params, embeddings, batch, extra, rng, *, model, config):
    """L_CLIP + region_weight L_region + grounding_weight L_ground (module docstring)."""
    del extra, rng
    options, implementation = config.cloc, implementation_options(config)
    logit_scale = clamped_logit_scale(model.apply({"params": params})["logit_scale"])
    clip_value, metrics = contrastive_loss(
        embeddings["image_embedding"], embeddings["text_embedding"], logit_scale, **implementation
    )
    regions, region_text = embeddings["region_embedding"], embeddings["region_text_embedding"]
    dim = regions.shape[-1]
    region_value, region_metrics = contrastive_loss(
        regions.reshape(-1, dim),
        region_text.reshape(-1, dim),
        logit_scale,
        valid=batch["region_valid"].reshape(-1),
        group=batch["region_group"].reshape(-1),
        **implementation,
    )
    ground_value, grounded = grounding_loss(
        embeddings["grounded_box"], batch["region_boxes"], batch["ground_valid"], options.l1_weight, options.giou_weight
    )
    loss = clip_value + options.region_weight * region_value + options.grounding_weight * ground_value
    metrics.update(
        clip_loss=clip_value,
        region_loss=region_value,
        region_accuracy=region_metrics["i2t_accuracy"],
        grounding_loss=ground_value,
        grounding_iou50=grounded,
        temperature=1.0 / jnp.exp(logit_scale),
    )
    return loss, metrics


def loss(params, batch, extra, rng, *, model, config):
    embeddings = embed(params, batch, extra, rng, model=model, config=config)
    return loss_from_embeddings(params, embeddings, batch, extra, rng, model=model, config=config)


def validate(config) -> None:
    """Raises ConfigError, naming the key and the fix, for CLOC options the run cannot train with."""
    options = config.cloc
    for key in ("region_weight", "grounding_weight", "l1_weight", "giou_weight"):
        if options[key] < 0:
            raise ConfigError(f"config.cloc.{key} must be at least 0, not {options[key]!r}.")
    if config.model.region_depth < 1:
        raise ConfigError(
            "CLOC's prompter and grounding head need config.model.region_depth >= 1 (configs/cloc.py sets 1)."
        )
    if tuple(config.data.crop_scale) != (1.0, 1.0):
        raise ConfigError(
            f"CLOC's boxes do not follow a random crop; set config.data.crop_scale=(1.0, 1.0), not "
            f"{tuple(config.data.crop_scale)}."
        )
