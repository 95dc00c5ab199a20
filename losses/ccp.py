"""CCP (Wu et al., IJCAI 2022): context-aware sentence pretraining with per-language memory banks.

CCP's pretraining code is not public and its method section could not be read here (METHODS.md 10),
so beyond the abstract this is the reconstruction METHODS.md describes, each part a choice:
- Positives: a centre sentence and one sentence within `data.context_window` of it in the same
  document (input_pipeline/text_sources.py draws it per example per epoch).
- Symmetric InfoNCE at temperature tau: the centre must pick its context among the batch's contexts
  and the bank's entries of its own language, and the context must pick its centre among the batch's
  centres and the same bank entries; in-batch candidates of another language are left out, so that
  language identity is never what tells the positive apart (the abstract's reason for the bank).
- Per-language memory banks: `extra["queue"]` [languages, queue_size, D] holds the latest
  context-branch embeddings of each language (FIFO, no gradient), `extra["valid"]` which slots are
  filled, `extra["pointer"]` the next slot per language.
- Asymmetric batch normalisation: the centre branch's features are standardised by their batch
  statistics (no learned scale or running averages) before L2 normalisation, the context branch's
  are not, in the spirit of MoCo's shuffle-BN; inference uses neither branch's BN but calibrates
  each language's embeddings (evaluation/calibration.py).
The InfoNCE runs on losses.contrastive.contrastive_loss in config.loss.implementation: languages as
its `domain`, the flattened per-language banks as one NegativeBank of rows and columns (the bank is
row-local work, O(B L Q)). GradCache embeds the raw text features; the batch normalisation, which
couples the examples, is part of the loss.
Config (`config.ccp`): temperature, queue_size (>= batch size), num_languages, asymmetric_bn.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from configs.errors import ConfigError
from losses.contrastive import contrastive_loss, implementation_options
from losses.extra_negatives import NegativeBank
from models.two_tower import l2_normalize

BN_EPS = 1e-5


def batch_standardize(x: jax.Array, eps: float = BN_EPS) -> jax.Array:
    """[B, D] -> [B, D]: each dimension centred and scaled by this batch's mean and variance."""
    mean = jnp.mean(x, axis=0, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(jnp.mean(jnp.square(x - mean), axis=0, keepdims=True) + eps)


def ccp_loss(
    centres: jax.Array,
    contexts: jax.Array,
    languages: jax.Array,
    queue: jax.Array,
    valid: jax.Array,
    temperature: float,
    **options,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Symmetric InfoNCE of [B, D] centres and contexts (L2-normalised), [B] int language ids, with
    negatives from the [L, Q, D] bank where [L, Q] `valid` -> (scalar, metrics): each anchor against
    the other side's in-batch candidates of its language and its language's bank entries, at logits
    cos / temperature. options: contrastive_loss's implementation keywords."""
    num_languages, size, dim = queue.shape
    bank = NegativeBank(
        jax.lax.stop_gradient(queue).reshape(num_languages * size, dim),
        valid.reshape(-1),
        domain=jnp.repeat(jnp.arange(num_languages, dtype=languages.dtype), size),
    )
    logit_scale = jnp.asarray(-math.log(temperature), centres.dtype)
    loss, metrics = contrastive_loss(
        centres, contexts, logit_scale, domain=languages, text_bank=bank, image_bank=bank, **options
    )
    return loss, {"accuracy": metrics["i2t_accuracy"], "bank_filled": jnp.mean(valid.astype(jnp.float32))}


def enqueue(extra: dict, embeddings: jax.Array, languages: jax.Array) -> dict:
    """The bank after writing [B, D] `embeddings` into the FIFO of their [B] languages (queue_size >= B)."""
    queue, valid, pointer = extra["queue"], extra["valid"], extra["pointer"]
    num_languages, size = valid.shape
    onehot = (languages[:, None] == jnp.arange(num_languages)[None, :]).astype(jnp.int32)  # [B, L]
    rank = jnp.take_along_axis(jnp.cumsum(onehot, axis=0) - 1, languages[:, None], axis=1)[:, 0]
    slot = (pointer[languages] + rank) % size
    return {
        "queue": queue.at[languages, slot].set(jax.lax.stop_gradient(embeddings).astype(queue.dtype)),
        "valid": valid.at[languages, slot].set(True),
        "pointer": (pointer + jnp.sum(onehot, axis=0)) % size,
    }


def ccp_init_extra(params, config, inputs=None) -> dict:
    """Empty per-language banks [num_languages, queue_size, embed_dim] (training/text_task.py checks that
    queue_size >= batch_size, which `enqueue` needs)."""
    del params, inputs
    options = config.ccp
    shape = (options.num_languages, options.queue_size)
    return {
        "queue": jnp.zeros((*shape, config.model.embed_dim), jnp.float32),
        "valid": jnp.zeros(shape, bool),
        "pointer": jnp.zeros((options.num_languages,), jnp.int32),
    }


def ccp_update_extra(extra: dict, params, aux: dict) -> dict:
    del params
    return enqueue(extra, aux["contexts"], aux["languages"])


def ccp_embed(params, batch, extra, rng, *, model, config) -> dict[str, jax.Array]:
    """Per-example [B, D] text features (before normalisation) of the centres and the contexts."""
    del extra, rng, config
    batch_size = batch["text"].shape[0]
    features = model.apply(
        {"params": params}, jnp.concatenate([batch["text"], batch["context"]]), method=model.encode_text
    )["text_features"]
    return {"centre_features": features[:batch_size], "context_features": features[batch_size:]}


def ccp_loss_from_embeddings(params, embeddings, batch, extra, rng, *, model, config):
    """CCP from ccp_embed's features: asymmetric batch normalisation, then the banked InfoNCE."""
    del params, rng, model
    options = config.ccp
    centre_features = embeddings["centre_features"]
    if options.asymmetric_bn:
        centre_features = batch_standardize(centre_features)
    centres, contexts = l2_normalize(centre_features), l2_normalize(embeddings["context_features"])
    languages = batch["language"]
    loss, metrics = ccp_loss(
        centres, contexts, languages, extra["queue"], extra["valid"], options.temperature,
        **implementation_options(config),
    )  # fmt: skip
    metrics["aux"] = {"contexts": contexts, "languages": languages}
    return loss, metrics


DOCUMENT_DATASETS = ("shape_documents", "documents")  # the data names whose batches hold "context" and "language"


def validate(config) -> None:
    """Raises ConfigError, naming the key and the fix, for CCP options or data it cannot train on."""
    options = config.ccp
    if config.data.name not in DOCUMENT_DATASETS:
        raise ConfigError(
            f"CCP trains on documents, not config.data.name={config.data.name!r}; set it to 'shape_documents' "
            "or 'documents' (with config.data.path)."
        )
    if options.temperature <= 0:
        raise ConfigError(f"config.ccp.temperature must be positive, not {options.temperature!r}.")
    if options.queue_size < config.batch_size:
        raise ConfigError(
            f"config.ccp.queue_size ({options.queue_size}) is below config.batch_size ({config.batch_size}); "
            "raise the queue size."
        )
    if options.num_languages < 1:
        raise ConfigError(f"config.ccp.num_languages must be at least 1, not {options.num_languages!r}.")


def ccp_objective_loss(params, batch, extra, rng, *, model, config):
    """CCP on a batch of {"text": centre, "context", "language"} (module docstring)."""
    embeddings = ccp_embed(params, batch, extra, rng, model=model, config=config)
    return ccp_loss_from_embeddings(params, embeddings, batch, extra, rng, model=model, config=config)
