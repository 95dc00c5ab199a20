"""uCLIP (Chung et al., AAAI 2026): extend a frozen CLIP to a new language with unpaired data only (METHODS.md 7).

Frozen: the CLIP towers and a multilingual sentence encoder (input_pipeline/second_language.py's
concept table, an embedding bag held in `extra`). Trained: two MLP heads, the model's `head_dim`
heads (models/heads.py): Head_A = `text_head` on multilingual-encoder embeddings, Head_B =
`image_head` on CLIP embeddings (image or text). No image is ever paired with a text: per English
training caption e,
    u = Multi(e), c = CLIPText(e)                                  (frozen)
    v~ = normalize(softmax(c M_img^T / tau_r) M_img)                (pseudo image, image bank)
    m~ = normalize(softmax(u M_mul^T / tau_r) M_mul)                (pseudo second-language text)
    each of u, c, v~, m~ += N(0, sigma^2), renormalised
    a_e = Head_A(u), a_m = Head_A(m~), b_t = Head_B(c), b_v = Head_B(v~)   (normalised)
    L = InfoNCE(a_e, b_t) + InfoNCE(a_m, b_v) + w_intra (||a_m - a_e|| + ||b_t - b_v||) / 2
with symmetric InfoNCE at tau = 0.01 and tau_r = 0.01, sigma^2 = 0.004, w_intra = 0.1. The banks
are CLIP image embeddings of `bank_size` images of the training data and Multi() of `bank_size`
second-language captions of other examples (neither describes the other). The trainer reads them, the
multilingual encoder's table and each caption's word ids on the host (training/objective_inputs.py):
this module only computes.
Inference: image -> Head_B(CLIPImage(x)), any-language text -> Head_A(Multi(text)).

The heads normalise by batch statistics (models/heads.py), in evaluation too: uCLIP's BatchNorm
keeps running averages instead; evaluation batches here hold hundreds of examples.

Both InfoNCE terms run on losses.contrastive.contrastive_loss in config.loss.implementation; the soft
retrieval is O(B N) per example against the banks. GradCache embeds the frozen encoders' outputs
(nothing upstream of them trains); retrieval, noise and the batch-normalised heads are in the loss.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from configs.errors import ConfigError
from losses.contrastive import contrastive_loss, implementation_options
from models.two_tower import build_model, l2_normalize


def multilingual_embedding(ids: jax.Array, table: jax.Array) -> jax.Array:
    """[N, W] word ids (-1 = none), [V, d] table -> [N, d] L2-normalised mean of the word vectors."""
    valid = (ids >= 0)[..., None]
    total = jnp.sum(jnp.where(valid, table[jnp.maximum(ids, 0)], 0.0), axis=1)
    return l2_normalize(total / jnp.maximum(jnp.sum(valid, axis=1), 1))


def soft_retrieval(queries: jax.Array, bank: jax.Array, temperature: float) -> jax.Array:
    """[B, d] queries, [N, d] bank -> [B, d] normalize(softmax(q bank^T / tau) bank): soft nearest neighbours."""
    weights = jax.nn.softmax(queries @ bank.T / temperature, axis=-1)
    return l2_normalize(weights @ bank)


def add_noise(x: jax.Array, std: float, rng: jax.Array) -> jax.Array:
    """[B, d] -> normalize(x + N(0, std^2))."""
    return l2_normalize(x + std * jax.random.normal(rng, x.shape, x.dtype))


def info_nce(a: jax.Array, b: jax.Array, temperature: float, **options) -> jax.Array:
    """Symmetric InfoNCE of [B, d] normalised a, b with pairs on the diagonal, logits a b^T / tau.
    options: contrastive_loss's implementation keywords."""
    return _info_nce(a, b, temperature, **options)[0]


def _info_nce(a, b, temperature, **options):
    return contrastive_loss(a, b, jnp.asarray(-math.log(temperature), a.dtype), **options)


def intra_loss(a_m: jax.Array, a_e: jax.Array, b_t: jax.Array, b_v: jax.Array) -> jax.Array:
    """mean_i (||a_m - a_e|| + ||b_t - b_v||) / 2 (Euclidean norms, not squared)."""
    return 0.5 * jnp.mean(jnp.linalg.norm(a_m - a_e, axis=-1) + jnp.linalg.norm(b_t - b_v, axis=-1))


def head_a(model, params, x: jax.Array) -> jax.Array:
    """Head_A (the model's text head) on [B, d] multilingual embeddings -> [B, head_dim] normalised."""
    return l2_normalize(model.apply({"params": params}, x, method=lambda m, x: m.text_head(x)))


def head_b(model, params, x: jax.Array) -> jax.Array:
    """Head_B (the model's image head) on [B, D] CLIP embeddings -> [B, head_dim] normalised."""
    return l2_normalize(model.apply({"params": params}, x, method=lambda m, x: m.image_head(x)))


def embed(params, batch, extra, rng, *, model, config) -> dict[str, jax.Array]:
    """The frozen encoders' per-example outputs: CLIP text embedding c and multilingual u, [B, D] each."""
    del rng, config
    clip = jax.lax.stop_gradient(model.apply({"params": params}, None, batch["text"]))["text_embedding"]
    return {"clip_text": clip, "multilingual": multilingual_embedding(batch["caption_words"], extra["concepts"])}


def loss_from_embeddings(params, embeddings, batch, extra, rng, *, model, config):
    """The objective's loss from `embed`'s outputs; extra = {"concepts", "image_bank", "text_bank"}."""
    del batch
    options, implementation = config.uclip, implementation_options(config)
    clip, u = embeddings["clip_text"], embeddings["multilingual"]
    pseudo_image = soft_retrieval(clip, extra["image_bank"], options.retrieval_temperature)
    pseudo_text = soft_retrieval(u, extra["text_bank"], options.retrieval_temperature)
    keys = jax.random.split(rng, 4)
    u, clip, pseudo_image, pseudo_text = (
        add_noise(x, options.noise_std, k) for x, k in zip((u, clip, pseudo_image, pseudo_text), keys, strict=True)
    )
    a_e, a_m = head_a(model, params, u), head_a(model, params, pseudo_text)
    b_t, b_v = head_b(model, params, clip), head_b(model, params, pseudo_image)
    inter_text, text_metrics = _info_nce(a_e, b_t, options.temperature, **implementation)
    inter_pseudo = info_nce(a_m, b_v, options.temperature, **implementation)
    intra = intra_loss(a_m, a_e, b_t, b_v)
    metrics = {
        "inter_text_loss": inter_text,
        "inter_pseudo_loss": inter_pseudo,
        "intra_loss": intra,
        "head_text_accuracy": text_metrics["i2t_accuracy"],
    }
    return inter_text + inter_pseudo + options.intra_weight * intra, metrics


def loss(params, batch, extra, rng, *, model, config):
    """The objective's loss; extra = {"concepts", "image_bank", "text_bank"}; options in config.uclip."""
    embeddings = embed(params, batch, extra, rng, model=model, config=config)
    return loss_from_embeddings(params, embeddings, batch, extra, rng, model=model, config=config)


def init_extra(params, config, inputs=None) -> dict:
    """The frozen multilingual encoder's table and the two memory banks, from the (loaded) CLIP params and
    the trainer's host inputs {"concepts": [V, D] table, "bank_images": [N, S, S, 3] normalised images,
    "bank_words": int32 [N, W] word ids of N other captions in the second language}."""
    if not inputs:
        raise ValueError("uCLIP's memory banks are made from the trainer's inputs; build them with "
                         "training.objective_inputs.prepare_inputs and pass them to init_extra.")  # fmt: skip
    model = build_model(config, params["text_tower"]["token_embedding"]["embedding"].shape[0])
    image_bank = model.apply({"params": params}, inputs["bank_images"], method=model.encode_image)["image_embedding"]
    return {
        "concepts": inputs["concepts"],
        "image_bank": image_bank,
        "text_bank": multilingual_embedding(inputs["bank_words"], inputs["concepts"]),
    }


def validate(config) -> None:
    """Raises ConfigError, naming the key and the fix, for a uCLIP option out of range or no CLIP to start from."""
    options = config.uclip
    if options.bank_size < 1:
        raise ConfigError(f"config.uclip.bank_size must be positive, not {options.bank_size!r}.")
    for key in ("temperature", "retrieval_temperature"):
        if options[key] <= 0:
            raise ConfigError(f"config.uclip.{key} must be positive, not {options[key]!r}.")
    if config.model.head_dim <= 0:
        raise ConfigError("uCLIP trains projection heads: set config.model.head_dim > 0 (configs/uclip.py).")
    if not (config.init_from.workdir or config.init_from.pretrained):
        raise ConfigError(
            "uCLIP extends a trained CLIP and freezes it; set config.init_from.workdir to a run of configs/clip.py."
        )
