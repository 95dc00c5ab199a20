"""Every objective, in every loss implementation it declares, gives the dense implementation's loss and
gradients; with GradCache (microbatches = 4) it gives the full-batch loss and gradients; unsupported
options are refused in one sentence. On 8 fake devices, float64 where the objective's math runs.

Implementations are compared on `loss_from_embeddings` (the part they change) at fixed per-example
embeddings, gradients taken with respect to the parameters and the embeddings; GradCache on the
whole `loss` against jax.value_and_grad of it.
"""

from __future__ import annotations

import functools
import importlib
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_training import VOCAB, tiny_config

from losses.contrastive import ALL_IMPLEMENTATIONS
from losses.objectives import (
    OBJECTIVES,
    Objective,
    check_objective_options,
    clip_loss,
    get_objective,
    objective_implementations,
)
from models.two_tower import build_model, l2_normalize
from training.grad_cache import grad_cache_value_and_grad
from training.mesh import make_mesh
from training.partitioning import FAST_COMPILE
from training.validation import ConfigError, validate_config

if jax.device_count() < 8:
    pytest.skip("needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8", allow_module_level=True)

BATCH, TILE = 40, 3  # 5 rows per device on data=8; neither 40 nor 5 is a multiple of the tile
FUSED_BLOCK = 16  # a power of two (Triton's blocks): 40 is not a multiple of it either
GRAD_CACHE_BATCH, MICROBATCHES = 32, 4
# The fused kernels take the whole batch: a mesh that splits it is refused, one that splits the model is not.
MESHES = {"data8": {"data": 8}, "data4_fsdp2": {"data": 4, "fsdp": 2}, "model8": {"data": 1, "model": 8}}
RTOL = 1e-5
RNG = np.array([0, 5], np.uint32)  # jax.random.PRNGKey(5)
VIDEO_FRAMES = 2  # X-CLIP's clips: the fewest frames its messages exchange between


def _config(name: str, implementation: str = "dense", batch_size: int = BATCH, microbatches: int = 1):
    """The tiny model with objective `name`'s own section (configs/<name>.py) and its model needs."""
    config = tiny_config(batch_size=batch_size, microbatches=microbatches)
    config.objective = name
    config.loss.implementation = implementation
    config.loss.tile_size = FUSED_BLOCK if implementation == "fused" else TILE
    module = {"clip_hard_negatives": "clip_hard_negatives"}.get(name, name)
    method = importlib.import_module(f"configs.{module}").get_config(None)
    if name in method:
        config[name] = method[name]
    if name == "clip_hard_negatives":
        config[name].top_k = 0  # on the shared primitive; the top-k term is dense (test_hard_negatives_loss.py)
    if name == "simcse":
        config[name].mode = "sup"  # the contradictions as a shared bank
    if name == "cloc":
        config.model.region_depth = 1
    if name == "denseclip":  # its InfoNCE term on, beside the per-pixel ones; a prompt that fits 8 tokens
        config[name].update(clip_weight=0.5, context_tokens=3, decoder_width=16, head_width=16)
    if name == "xclip":
        config.model.video_frames = VIDEO_FRAMES
        config.data.name = "shapes_video"
    if name == "coconut":  # experience 1 of 4 (classes 0-3 seen); NSPT (dense only: test_coconut.py) off
        config.model.image_classes = 8
        config[name].update(task=1, nspt_weight=0.0)
    if name in ("protoclip", "proclip", "uclip"):
        config.model.head_dim = config.model.embed_dim
        config.model.head_hidden_dim = 32
    return config


def _fields(name: str, config, size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random inputs of the fields objective `name` reads beyond "image" and "text"."""
    length = config.model.text.max_len
    tokens = lambda *shape: rng.integers(1, VOCAB, size=(*shape, length)).astype(np.int32)  # noqa: E731
    if name == "dreamlip":
        return {"subcaptions": tokens(size, 3)}
    if name == "clip_hard_negatives":
        return {"hard_negative_text": tokens(size, 6)}
    if name == "degla":
        return {"hard_negatives": tokens(size, 6)}
    if name == "alip":
        return {"raw_text": tokens(size)}
    if name == "uclip":
        return {"caption_words": rng.integers(-1, 20, size=(size, 24)).astype(np.int32)}
    if name in ("simcse", "multicsr"):
        return {"positive": tokens(size), "negative": tokens(size)}
    if name == "ccp":
        return {"context": tokens(size), "language": rng.integers(0, config.ccp.num_languages, size).astype(np.int32)}
    if name == "xclip":
        side = config.data.image_size
        return {
            "video": rng.normal(size=(size, VIDEO_FRAMES, side, side, 3)).astype(np.float32),
            "negative_text": tokens(size, 5),
            "negative_valid": rng.random((size, 5)) < 0.7,  # some clips with fewer hard negatives
            "caption_group": rng.integers(0, 12, size).astype(np.int32),  # repeated captions: not negatives
        }
    if name == "cloc":
        corner = rng.uniform(0, 0.6, size=(size, 3, 2))
        valid = rng.random((size, 3)) < 0.7
        return {
            "region_boxes": np.concatenate([corner, corner + rng.uniform(0.1, 0.4, (size, 3, 2))], -1).astype(
                np.float32
            ),
            "region_text": tokens(size, 3),
            "region_valid": valid,
            "region_group": rng.integers(0, 6, (size, 3)).astype(np.int32),  # duplicates: not each other's negatives
            "ground_valid": valid & (rng.random((size, 3)) < 0.8),
        }
    if name == "coconut":  # seen classes only; a few rehearsal samples of two classes
        replay = np.arange(size) < size // 4
        labels = np.where(replay, np.arange(size) % 2, 2 + rng.integers(0, 2, size))
        return {"class_label": labels.astype(np.int32), "replay": replay}
    if name == "denseclip":
        labels = rng.integers(0, len(config.denseclip.class_names), (size, *(config.data.image_size,) * 2))
        return {"segmentation": np.where(rng.random(labels.shape) < 0.1, 255, labels).astype(np.int32)}
    return {}


def _batch(name: str, config, size: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    side = config.data.image_size
    out = {
        "image": rng.normal(size=(size, side, side, 3)).astype(np.float32),
        "text": rng.integers(1, VOCAB, size=(size, config.model.text.max_len)).astype(np.int32),
    }
    return out | _fields(name, config, size, rng)


def _perturbed(params, seed: int):
    """A frozen copy of `params` a little away from them (teacher, frozen encoder, embedder)."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    moved = [p + 0.05 * jax.random.normal(k, p.shape, p.dtype) for p, k in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(tree, moved)


def _extra(name: str, config, params):
    """The objective's extra state, filled so that every term takes part (ready prototypes, full banks)."""
    rng = jax.random.PRNGKey(7)
    unit = lambda key, *shape: l2_normalize(jax.random.normal(key, shape, jnp.float64))  # noqa: E731
    if name in ("clip_refine", "degla", "coconut"):
        return {"teacher": _perturbed(params, 1)}
    if name in ("multicsr", "clip_hard_negatives"):
        return {"frozen": _perturbed(params, 2)}
    if name == "proclip":
        return {"embedder": _perturbed(params, 3), "teacher": _perturbed(params, 4)}
    if name == "uclip":
        keys = jax.random.split(rng, 3)
        dim = config.model.embed_dim
        return {
            "concepts": unit(keys[0], 20, dim),
            "image_bank": unit(keys[1], 12, dim),
            "text_bank": unit(keys[2], 12, dim),
        }
    if name == "denseclip":
        names, length = len(config.denseclip.class_names), config.model.text.max_len - config.denseclip.context_tokens
        return {"class_tokens": jax.random.randint(rng, (names, length), 1, VOCAB)}
    extra = get_objective(name).init_extra(params, config)
    if name == "protoclip":
        k, d = extra["image_centroids"].shape
        keys = jax.random.split(rng, 4)
        extra.update(
            ready=jnp.ones((), jnp.float64),
            image_centroids=unit(keys[0], k, d),
            text_centroids=unit(keys[1], k, d),
            image_from_text=unit(keys[2], k, d),
            text_from_image=unit(keys[3], k, d),
            image_valid=jnp.arange(k) != 1,
            text_valid=jnp.arange(k) != 2,
        )
    if name == "ccp":
        languages, size = extra["valid"].shape
        extra.update(
            queue=unit(rng, languages, size, extra["queue"].shape[-1]),
            valid=jnp.broadcast_to(jnp.arange(size) % 3 != 0, (languages, size)),
        )
    return jax.tree.map(lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, extra)


@functools.cache
def _setup(name: str, batch_size: int):
    """(config, model, float64 params, batch, extra) of objective `name`."""
    config = _config(name, batch_size=batch_size)
    model = build_model(config, VOCAB)
    batch = _batch(name, config, batch_size)
    # Jitted: about 3x faster than running init's ops one by one (identical values up to float32 rounding).
    init = jax.jit(model.init, compiler_options=FAST_COMPILE)
    params = init(jax.random.PRNGKey(0), batch["image"][:1], batch["text"][:1])["params"]
    params = jax.tree.map(lambda p: np.asarray(p, np.float64), params)
    with jax.enable_x64(True):
        return config, model, params, batch, jax.device_get(_extra(name, config, params))


@functools.cache
def _embeddings(name: str):
    """objective.embed of the BATCH-sized setup, in float64."""
    config, model, params, batch, extra = _setup(name, BATCH)
    with jax.enable_x64(True):
        embed = functools.partial(get_objective(name).embed, model=model, config=config)
        return jax.device_get(_float64(jax.jit(embed)(params, batch, extra, RNG)))


def _float64(tree):
    return jax.tree.map(lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def _close(got, want, what: str) -> None:
    """Leaf by leaf to RTOL, absolute RTOL x the largest entry of `want`: a leaf whose true value is ~0
    (the attention key bias's gradient) holds only the towers' float32 rounding."""
    scale = max(max(float(np.abs(w).max()) for w in jax.tree.leaves(want)), 1e-12)
    for (path, g), w in zip(jax.tree_util.tree_flatten_with_path(got)[0], jax.tree.leaves(want), strict=True):
        w = np.asarray(w)
        np.testing.assert_allclose(
            np.asarray(g), w, rtol=RTOL, atol=RTOL * scale, err_msg=f"{what}{jax.tree_util.keystr(path)}"
        )


@functools.cache
def _from_embeddings(name: str, implementation: str, mesh_name: str):
    """((loss, metrics), (d params, d embeddings)) of loss_from_embeddings in `implementation` on the mesh."""
    _, model, params, batch, extra = _setup(name, BATCH)
    config = _config(name, implementation)
    objective, mesh = get_objective(name), make_mesh(MESHES[mesh_name])

    def loss(p, e):
        return objective.loss_from_embeddings(p, e, batch, extra, RNG, model=model, config=config)

    with jax.enable_x64(True), jax.set_mesh(mesh):
        step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True), compiler_options=FAST_COMPILE)
        return jax.device_get(step(params, _embeddings(name)))


# CI runs the custom-VJP paths (tiled, ring_tiled, and fused where declared) of every objective; `gathered` and
# `ring` share their code with the primitive, whose feature tests (tests/test_contrastive_features.py) cover all five.
# OBJECTIVE_MATRIX=full runs every implementation of every objective (about 2x the time).
CHECKED = ALL_IMPLEMENTATIONS if os.environ.get("OBJECTIVE_MATRIX") == "full" else ("tiled", "ring_tiled", "fused")


def _cases():
    for name in OBJECTIVES:
        implementations, _ = objective_implementations(name, _config(name))
        for implementation in implementations:
            if implementation != "dense" and implementation in CHECKED:
                mesh_name = "model8" if implementation == "fused" else "data8"
                yield pytest.param(name, implementation, mesh_name, id=f"{name}-{implementation}-{mesh_name}")
        if "ring_tiled" in implementations:
            yield pytest.param(name, "ring_tiled", "data4_fsdp2", id=f"{name}-ring_tiled-data4_fsdp2")


@pytest.mark.parametrize("name, implementation, mesh_name", list(_cases()))
def test_objective_gives_the_dense_loss_and_gradients(name, implementation, mesh_name):
    (got_loss, got_metrics), got_grads = _from_embeddings(name, implementation, mesh_name)
    (want_loss, want_metrics), want_grads = _from_embeddings(name, "dense", "data8")
    _close(got_loss, want_loss, "loss")
    assert set(got_metrics) == set(want_metrics)
    _close(got_grads, want_grads, "grad")


# clip and siglip: tests/test_grad_cache.py, through the trainer's sharded step.
@pytest.mark.parametrize(
    "name", [name for name in OBJECTIVES if OBJECTIVES[name].grad_cache and name not in ("clip", "siglip")]
)
def test_grad_cache_gives_the_full_batch_loss_and_gradients(name):
    # The implementations are compared above, and GradCache on a sharded batch in test_grad_cache.py:
    # here the objective's embed / loss_from_embeddings split, dense on one device (fast to compile).
    _, model, params, batch, extra = _setup(name, GRAD_CACHE_BATCH)
    objective, rng = get_objective(name), RNG
    results = {}
    for microbatches in (1, MICROBATCHES):
        config = _config(name, "dense", GRAD_CACHE_BATCH, microbatches)
        if microbatches == 1:
            loss = functools.partial(objective.loss, model=model, config=config)
            step = jax.value_and_grad(loss, has_aux=True)
        else:
            step = functools.partial(
                grad_cache_value_and_grad, objective, model=model, config=config, microbatches=microbatches
            )
        with jax.enable_x64(True):
            results[microbatches] = jax.device_get(
                jax.jit(step, compiler_options=FAST_COMPILE)(params, batch, extra, rng)
            )
    (got_loss, _), got_grads = results[MICROBATCHES]
    (want_loss, _), want_grads = results[1]
    _close(got_loss, want_loss, "loss")
    _close(got_grads, want_grads, "grad")


def test_declarations_are_consistent():
    for name, objective in OBJECTIVES.items():
        assert objective.grad_cache == (objective.embed is not None and objective.loss_from_embeddings is not None), (
            name
        )
        assert set(objective.implementations) <= set(ALL_IMPLEMENTATIONS) and "dense" in objective.implementations, name


def test_unsupported_options_are_refused_in_one_sentence():
    config = _config("dreamlip", "ring")
    check_objective_options(config)
    config.dreamlip.multipos = "circle"
    with pytest.raises(ValueError) as refused:
        check_objective_options(config)
    message = str(refused.value)
    assert message.startswith("config.loss.implementation='ring' is not supported by objective 'dreamlip' (")
    assert message.endswith("; set config.loss.implementation to one of ['dense'].")
    assert message.count(". ") == 0 and message.count("\n") == 0


def test_validate_config_refuses_them_as_config_errors(monkeypatch):
    config = importlib.import_module("configs.dreamlip").get_config(None)
    config.dreamlip.multipos, config.loss.implementation = "circle", "ring_tiled"
    with pytest.raises(ConfigError, match=r"^config.loss.implementation='ring_tiled' is not supported"):
        validate_config(config)
    config.loss.implementation, config.objective, config.microbatches = "dense", "no_split", 2
    monkeypatch.setitem(OBJECTIVES, "no_split", Objective(loss=clip_loss))
    with pytest.raises(ValueError, match=r"^config.microbatches=2 needs GradCache, .*set config.microbatches to 1\.$"):
        check_objective_options(config)
