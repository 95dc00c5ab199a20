"""ProCLIP (Hu, Yang et al. 2025): put a frozen text embedder's features into CLIP's space, then tune (METHODS.md 8).

A frozen embedder G stands in for the paper's LLM embedder: the text tower of a second trained CLIP
run (`proclip.embedder_workdir`), or, when that is empty, of a randomly initialised one (a fixed
random feature map, METHODS.md's CPU stand-in). A trainable MLP (the model's `text_head`,
Linear - batch norm - ReLU - Linear, head_dim = embed_dim) maps t' = G(T) into CLIP's space;
t = normalize(MLP(t')) is ProCLIP's text embedding from then on.

Stage 1, representation inheritance (`proclip.stage = 1`; only the MLP trains), against the loaded
CLIP's own text embedding e = E_T(T) (normalised, no gradient):
    L_ins    = sum_i ||t_i - e_i||^2                                   (MSE, reduction "sum")
    L_struct = sum_{i<j} SmoothL1(d(t_i, t_j) - d(e_i, e_j))           (pdist, reduction "sum", beta 1)
    L_1 = L_ins + L_struct
Stage 2, contrastive tuning with self-distillation (`proclip.stage = 2`; image tower, image
projection, logit scale and MLP train), with f the image embedding and f^T that of a frozen copy of
the starting image tower:
    L_2 = L_CLIP(f, t) + lambda_d (sum_i ||f_i - f^T_i||^2 + sum_{i<j} SmoothL1(d(f_i, f_j) - d(f^T_i, f^T_j)))

Choices where the released code is silent or differs from the paper:
- the teacher of stage 2 is the frozen starting copy (the released code calls teacher_model.encode_image
  under no_grad and never updates it), not an EMA;
- lambda_d is not in the code snapshot: default 1.0 (`proclip.distill_weight`);
- stage 1 distils on the batch's captions only (the code adds a second "noise" text batch; the
  shapes data has no second caption set);
- pdist at a distance of 0 (two identical captions) has gradient 0, as torch's pdist backward.

Implementations: all five; the structure loss compares all B (B - 1) / 2 pairwise distances block by
block like the CLIP term (losses/distance_structure.py). GradCache embeds the frozen embedder's G(T),
the targets and the image embeddings; the batch-normalised MLP is part of the loss.

Config (configs/proclip_stage1.py, configs/proclip.py; sub-config `proclip`): stage,
embedder_workdir, embedder_seed, distill_weight.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from configs.errors import ConfigError
from losses import distance_structure
from losses.contrastive import contrastive_loss, implementation_options
from losses.logit_scale import clamped_logit_scale
from models.two_tower import build_model, l2_normalize

STAGES = (1, 2)
# What the embedder brings along from its checkpoint: the text path of the CLIP model.
EMBEDDER_PREFIXES = ("text_tower", "text_projection")


def instance_loss(student: jax.Array, teacher: jax.Array) -> jax.Array:
    """[N, D], [N, D] -> sum of squared differences (MSE with reduction "sum")."""
    return jnp.sum(jnp.square(student - teacher))


def structure_loss(student: jax.Array, teacher: jax.Array, config=None) -> jax.Array:
    """[N, D], [N, D] -> sum over pairs i < j of SmoothL1(d_student(i, j) - d_teacher(i, j)), by
    config.loss.implementation (losses/distance_structure.py; dense without a config). Always float32:
    config.loss.matmul_dtype is for logits, and distances subtract nearly equal numbers."""
    options = implementation_options(config)
    del options["matmul_dtype"]
    return distance_structure.structure_loss(student, teacher, **options)


def proclip_text_embedding(model, params, embedder, tokens: jax.Array) -> jax.Array:
    """int32 [B, L] tokens -> [B, D] normalize(MLP(G(T))): the frozen embedder `embedder` (params of the
    same architecture), then the model's trainable text_head."""
    return _text_head(model, params, _frozen_embedding(model, embedder, tokens))


def _frozen_embedding(model, embedder, tokens: jax.Array) -> jax.Array:
    frozen = model.apply({"params": embedder}, tokens, method=model.encode_text)["text_embedding"]
    return jax.lax.stop_gradient(frozen)


def _text_head(model, params, frozen: jax.Array) -> jax.Array:
    return l2_normalize(model.apply({"params": params}, frozen, method=lambda m, x: m.text_head(x)))


def embed(params, batch, extra, rng, *, model, config) -> dict[str, jax.Array]:
    """Per-example [B, D]: G(T) (frozen); stage 1 the CLIP text embedding (target, no gradient); stage 2
    the image embedding and the frozen teacher's."""
    del rng
    embeddings = {"frozen_text": _frozen_embedding(model, extra["embedder"], batch["text"])}
    if config.proclip.stage == 1:
        target = model.apply({"params": params}, None, batch["text"])["text_embedding"]
        return embeddings | {"target_text": jax.lax.stop_gradient(target)}
    image = model.apply({"params": params}, batch["image"], method=model.encode_image)["image_embedding"]
    teacher = model.apply({"params": extra["teacher"]}, batch["image"], method=model.encode_image)
    return embeddings | {"image_embedding": image, "teacher_image": jax.lax.stop_gradient(teacher["image_embedding"])}


def loss_from_embeddings(params, embeddings, batch, extra, rng, *, model, config):
    """The objective's loss from `embed`'s embeddings."""
    del batch, extra, rng
    text = _text_head(model, params, embeddings["frozen_text"])
    if config.proclip.stage == 1:
        target = embeddings["target_text"]
        instance, structure = instance_loss(text, target), structure_loss(text, target, config)
        metrics = {
            "instance_loss": instance,
            "structure_loss": structure,
            "cosine_to_clip_text": jnp.mean(jnp.sum(text * target, axis=-1)),
        }
        return instance + structure, metrics
    image, teacher = embeddings["image_embedding"], embeddings["teacher_image"]
    logit_scale = clamped_logit_scale(model.apply({"params": params})["logit_scale"])
    clip, metrics = contrastive_loss(image, text, logit_scale, **implementation_options(config))
    instance, structure = instance_loss(image, teacher), structure_loss(image, teacher, config)
    metrics.update(
        clip_loss=clip,
        instance_loss=instance,
        structure_loss=structure,
        temperature=1.0 / jnp.exp(logit_scale),
    )
    return clip + config.proclip.distill_weight * (instance + structure), metrics


def loss(params, batch, extra, rng, *, model, config):
    """The objective's loss; extra = {"embedder": frozen params, "teacher": frozen starting params}."""
    embeddings = embed(params, batch, extra, rng, model=model, config=config)
    return loss_from_embeddings(params, embeddings, batch, extra, rng, model=model, config=config)


def load_embedder(config, params, inputs=None) -> dict:
    """The frozen embedder's params: `params` with the text path (EMBEDDER_PREFIXES) taken from
    inputs["embedder"], which the trainer reads from proclip.embedder_workdir's latest checkpoint
    (training/objective_inputs.py), or from a fresh initialisation (seed proclip.embedder_seed) without it."""
    if inputs and "embedder" in inputs:
        return {**params, **inputs["embedder"]}
    options = config.proclip
    vocab = params["text_tower"]["token_embedding"]["embedding"].shape[0]
    model = build_model(config, vocab)
    side = config.data.image_size
    fresh = model.init(
        jax.random.PRNGKey(options.embedder_seed),
        jnp.zeros((2, side, side, 3), jnp.float32),
        jnp.ones((2, config.model.text.max_len), jnp.int32),
    )["params"]
    return {**params, **{k: fresh[k] for k in EMBEDDER_PREFIXES}}


def init_extra(params, config, inputs=None) -> dict:
    """The frozen embedder and the frozen copy of the starting (loaded) params (stage 2's image teacher);
    `inputs`: load_embedder's."""
    return {"embedder": load_embedder(config, params, inputs), "teacher": jax.tree.map(jnp.copy, params)}


def validate(config) -> None:
    """Raises ConfigError, naming the key and the fix, for a ProCLIP option, a missing starting run or embedder."""
    options = config.proclip
    if options.stage not in STAGES:
        raise ConfigError(f"Unknown config.proclip.stage {options.stage!r}; use 1 or 2.")
    if config.model.head_dim != config.model.embed_dim:
        raise ConfigError(
            f"ProCLIP's MLP maps into CLIP's space: set config.model.head_dim to config.model.embed_dim "
            f"({config.model.embed_dim}), not {config.model.head_dim}."
        )
    if not (config.init_from.workdir or config.init_from.pretrained):
        start = "a CLIP run" if options.stage == 1 else "the ProCLIP stage 1 run"
        raise ConfigError(
            f"ProCLIP stage {options.stage} starts from a trained model; set config.init_from.workdir to {start}."
        )
    embedder = options.embedder_workdir
    if embedder and not os.path.isdir(os.path.join(embedder, "checkpoints")):
        raise ConfigError(
            f"config.proclip.embedder_workdir {embedder!r} holds no checkpoints folder; pass the --workdir of a "
            "trained CLIP run, or '' for a random embedder."
        )
