"""ProtoCLIP (Chen et al. 2023): CLIP plus prototype-level discrimination between the modalities.

Model: an MLP head per tower (models/heads.py; config.model.head_dim, head_hidden_dim) maps the tower
features to normalised z^I, z^T, with its own temperature s_p (logit_scale_proto, clamped at 100).
The CLIP loss stays on the ordinary embeddings.

Episodes, all on device in the objective's `extra` state: the heads' outputs of the last episode
(episode_steps x batch examples) fill a feature bank; when an episode ends, spherical k-means
(KMEANS_ITERATIONS rounds, K = num_prototypes, seeded with K distinct bank rows) clusters the image
and the text bank apart, giving labels y^I, y^T and centroids C^I, C^T. Prototypical back
translation (PBT) then gives each cluster its centroid in the OTHER modality's space:
    C^{I<-T}_k = normalise(mean{z^I_n : y^T_n = k}),   C^{T<-I}_k = normalise(mean{z^T_n : y^I_n = k}).
Loss for a batch example n (no gradient through centroids or targets):
    L_{I->T} = CE(s_p z^I_n C^{I<-T}^T, softmax(C^T_{y} C^T^T / tau_t)),  y = y^T_n,
L_{T->I} alike, L_proto = 1/2 (L_{I->T} + L_{T->I}); tau_t = target_temperature (0.01), and
tau_t <= 0 gives the hard label y. L = L_CLIP + proto_weight L_proto. Until the first episode has
ended there are no prototypes and L = L_CLIP: the InfoNCE warm-up of one episode (the paper's
--infonce-warmup-epoch 1). Clusters that came out empty are left out of both softmaxes.

Choices against the paper's recipe, forced by an in-step, on-device version:
- the bank holds features as the training steps computed them during the episode (so with the
  parameters of those steps), not a separate forward pass over the next episode's data;
- a batch example's labels y^T_n, y^I_n are its nearest centroids (cosine) under the current heads,
  as the example itself may not be in the bank; the paper reads them off its episode clustering;
- one k-means run (faiss: nredo 3), and BatchNorm in the heads uses batch statistics only;
- no external teacher (the paper's optional RoBERTa clusters) and no LiT-style last episode.

The CLIP term runs on losses.contrastive.contrastive_loss in config.loss.implementation; the prototype
term is O(B K) per example against the K centroids, in any implementation. The heads normalise by
batch statistics, so GradCache embeds the tower features and the heads are part of the loss.

Config (configs/protoclip.py, sub-config `protoclip`): num_prototypes, episode_steps,
target_temperature, proto_weight.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from configs.errors import ConfigError
from losses.contrastive import contrastive_loss, implementation_options
from losses.logit_scale import clamped_logit_scale
from models.two_tower import l2_normalize

KMEANS_ITERATIONS = 20


def spherical_kmeans(features: jax.Array, num_clusters: int, rng: jax.Array, iterations: int = KMEANS_ITERATIONS):
    """features [N, d] normalised -> (labels int32 [N], centroids [K, d] normalised, counts [K]).

    Assignments by cosine; a cluster that empties keeps its previous centroid."""
    start = jax.random.choice(rng, features.shape[0], (num_clusters,), replace=False)
    centroids = features[start]

    def assign(centroids):
        return jnp.argmax(features @ centroids.T, axis=1)

    def step(centroids, _):
        labels = assign(centroids)
        sums = jax.ops.segment_sum(features, labels, num_segments=num_clusters)
        counts = jax.ops.segment_sum(jnp.ones(features.shape[0]), labels, num_segments=num_clusters)
        return jnp.where(counts[:, None] > 0, l2_normalize(sums), centroids), None

    centroids, _ = jax.lax.scan(step, centroids, None, length=iterations)
    labels = assign(centroids)
    counts = jax.ops.segment_sum(jnp.ones(features.shape[0]), labels, num_segments=num_clusters)
    return labels.astype(jnp.int32), centroids, counts


def back_translate(features: jax.Array, labels: jax.Array, num_clusters: int) -> jax.Array:
    """PBT: features [N, d] of one modality, cluster labels [N] of the other -> [K, d] normalised means
    (zero rows for empty clusters)."""
    sums = jax.ops.segment_sum(features, labels, num_segments=num_clusters)
    counts = jax.ops.segment_sum(jnp.ones(features.shape[0]), labels, num_segments=num_clusters)
    return jnp.where(counts[:, None] > 0, l2_normalize(sums), 0.0)


def prototype_loss(
    student: jax.Array,
    translated: jax.Array,
    teacher_centroids: jax.Array,
    teacher_labels: jax.Array,
    valid: jax.Array,
    scale: jax.Array,
    target_temperature: float,
) -> jax.Array:
    """Soft-target CE, mean over the batch. student [B, d] normalised; translated [K, d] (PBT centroids
    in the student's space); teacher_centroids [K, d] and teacher_labels [B] from the other modality;
    valid [K] bool, clusters that exist; scale = exp(logit_scale_proto)."""
    lowest = jnp.finfo(student.dtype).min
    logits = jnp.where(valid, scale * student @ translated.T, lowest)
    if target_temperature > 0:
        target_logits = teacher_centroids[teacher_labels] @ teacher_centroids.T / target_temperature
        targets = jax.nn.softmax(jnp.where(valid, target_logits, lowest), axis=1)
    else:
        targets = jax.nn.one_hot(teacher_labels, translated.shape[0])
    return -jnp.mean(jnp.sum(targets * jax.nn.log_softmax(logits, axis=1), axis=1))


def init_extra(params, config, inputs=None) -> dict[str, jax.Array]:
    """Empty banks and prototypes; `ready` 0 until the first episode has been clustered."""
    del params, inputs
    bank = config.protoclip.episode_steps * config.batch_size
    k, d = config.protoclip.num_prototypes, config.model.head_dim
    zeros = lambda *shape: jnp.zeros(shape, jnp.float32)  # noqa: E731
    return {
        "step": jnp.zeros((), jnp.int32),
        "ready": jnp.zeros((), jnp.float32),
        "image_bank": zeros(bank, d),
        "text_bank": zeros(bank, d),
        "image_centroids": zeros(k, d),
        "text_centroids": zeros(k, d),
        "image_from_text": zeros(k, d),  # C^{I<-T}: image-space centroids of the text clusters
        "text_from_image": zeros(k, d),  # C^{T<-I}
        "image_valid": jnp.zeros((k,), bool),
        "text_valid": jnp.zeros((k,), bool),
    }


def cluster_episode(extra: dict) -> dict:
    """k-means on both banks, then PBT; marks the prototypes ready."""
    k = extra["image_centroids"].shape[0]
    rng = jax.random.fold_in(jax.random.PRNGKey(0), extra["step"])
    image_rng, text_rng = jax.random.split(rng)
    image_labels, image_centroids, image_counts = spherical_kmeans(extra["image_bank"], k, image_rng)
    text_labels, text_centroids, text_counts = spherical_kmeans(extra["text_bank"], k, text_rng)
    return dict(
        extra,
        ready=jnp.ones((), jnp.float32),
        image_centroids=image_centroids,
        text_centroids=text_centroids,
        image_from_text=back_translate(extra["image_bank"], text_labels, k),
        text_from_image=back_translate(extra["text_bank"], image_labels, k),
        image_valid=image_counts > 0,
        text_valid=text_counts > 0,
    )


def update_extra(extra, params, aux):
    """Writes this batch's head outputs into the bank; clusters when the episode is complete."""
    del params
    batch = aux["image"].shape[0]
    episode_steps = extra["image_bank"].shape[0] // batch
    row = (extra["step"] % episode_steps) * batch
    extra = dict(
        extra,
        step=extra["step"] + 1,
        image_bank=jax.lax.dynamic_update_slice(extra["image_bank"], aux["image"], (row, 0)),
        text_bank=jax.lax.dynamic_update_slice(extra["text_bank"], aux["text"], (row, 0)),
    )
    return jax.lax.cond(extra["step"] % episode_steps == 0, cluster_episode, lambda e: e, extra)


def protoclip_embed(params, batch, extra, rng, *, model, config) -> dict[str, jax.Array]:
    """Per-example tower outputs: [B, D] image and text features and embeddings (the heads come later)."""
    del extra, rng, config
    image = model.apply({"params": params}, batch["image"], method=model.encode_image)
    text = model.apply({"params": params}, batch["text"], method=model.encode_text)
    keys = ("image_features", "image_embedding", "text_features", "text_embedding")
    return {key: (image | text)[key] for key in keys}


def protoclip_loss_from_embeddings(params, embeddings, batch, extra, rng, *, model, config):
    """CLIP loss + proto_weight x the prototype loss (zero during the first, warm-up episode)."""
    del batch, rng
    options = config.protoclip
    logit_scale = clamped_logit_scale(model.apply({"params": params})["logit_scale"])
    clip_value, metrics = contrastive_loss(
        embeddings["image_embedding"], embeddings["text_embedding"], logit_scale, **implementation_options(config)
    )
    heads = model.apply(
        {"params": params}, embeddings["image_features"], embeddings["text_features"], method=model.head_embeddings
    )
    z_image, z_text = heads["image_head_embedding"], heads["text_head_embedding"]
    scale = jnp.exp(clamped_logit_scale(heads["logit_scale_proto"]))
    image_centroids = jax.lax.stop_gradient(extra["image_centroids"])
    text_centroids = jax.lax.stop_gradient(extra["text_centroids"])
    frozen = jax.lax.stop_gradient((z_image, z_text))
    image_labels = jnp.argmax(jnp.where(extra["image_valid"], frozen[0] @ image_centroids.T, -jnp.inf), axis=1)
    text_labels = jnp.argmax(jnp.where(extra["text_valid"], frozen[1] @ text_centroids.T, -jnp.inf), axis=1)
    image_to_text = prototype_loss(
        z_image, extra["image_from_text"], text_centroids, text_labels, extra["text_valid"], scale,
        options.target_temperature,
    )  # fmt: skip
    text_to_image = prototype_loss(
        z_text, extra["text_from_image"], image_centroids, image_labels, extra["image_valid"], scale,
        options.target_temperature,
    )  # fmt: skip
    proto = 0.5 * (image_to_text + text_to_image)
    loss = clip_value + extra["ready"] * options.proto_weight * proto
    metrics.update(
        clip_loss=clip_value,
        proto_loss=proto,
        temperature=1.0 / jnp.exp(logit_scale),
        prototypes_ready=extra["ready"],
        proto_temperature=1.0 / scale,
        aux={"image": frozen[0], "text": frozen[1]},
    )
    return loss, metrics


def validate(config) -> None:
    """Raises ConfigError, naming the key and the fix, for prototypes the episode cannot fill or missing heads."""
    options = config.protoclip
    if options.episode_steps < 1 or options.num_prototypes < 1:
        raise ConfigError(
            f"config.protoclip.episode_steps ({options.episode_steps}) and num_prototypes "
            f"({options.num_prototypes}) must be positive; raise them."
        )
    bank = options.episode_steps * config.batch_size
    if options.num_prototypes > bank:
        raise ConfigError(
            f"config.protoclip.num_prototypes ({options.num_prototypes}) exceeds the episode's {bank} examples; "
            "raise config.protoclip.episode_steps or lower num_prototypes."
        )
    if config.model.head_dim <= 0:
        raise ConfigError("ProtoCLIP needs projection heads: set config.model.head_dim > 0 (configs/protoclip.py).")


def protoclip_loss(params, batch, extra, rng, *, model, config):
    """CLIP loss + proto_weight x the prototype loss (zero during the first, warm-up episode)."""
    embeddings = protoclip_embed(params, batch, extra, rng, model=model, config=config)
    return protoclip_loss_from_embeddings(params, embeddings, batch, extra, rng, model=model, config=config)
