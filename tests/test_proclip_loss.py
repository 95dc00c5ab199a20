"""ProCLIP's two stages against NumPy float64 references, and its frozen embedder."""

import functools

import jax
import ml_collections
import numpy as np
import pytest

from configs.errors import ConfigError
from losses import distance_structure, proclip
from models.two_tower import build_model
from tests.tiny_training import VOCAB, batch, tiny_config


@pytest.fixture(autouse=True)
def float64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def np_pdist(x):
    n = len(x)
    return np.array([np.linalg.norm(x[i] - x[j]) for i in range(n) for j in range(i + 1, n)])


def np_smooth_l1(x):
    return np.where(np.abs(x) < 1, 0.5 * x**2, np.abs(x) - 0.5)


def np_distill(student, teacher):
    """(sum ||s - t||^2, sum SmoothL1(pdist(s) - pdist(t)))."""
    return np.sum((student - teacher) ** 2), np.sum(np_smooth_l1(np_pdist(student) - np_pdist(teacher)))


def np_head(p, x):
    """models/heads.py MlpHead: Dense - batch-statistics norm - ReLU - Dense, then L2 normalisation."""
    h = x @ p["fc1"]["kernel"] + p["fc1"]["bias"]
    h = (h - h.mean(0)) / np.sqrt(h.var(0) + 1e-5) * p["norm"]["scale"] + p["norm"]["bias"]
    return unit(np.maximum(h, 0) @ p["fc2"]["kernel"] + p["fc2"]["bias"])


def np_clip(f, g, s):
    logits = s * f @ g.T
    rows = [np.log(np.exp(logits[i]).sum()) - logits[i, i] for i in range(len(f))]
    cols = [np.log(np.exp(logits[:, j]).sum()) - logits[j, j] for j in range(len(f))]
    return 0.5 * (np.mean(rows) + np.mean(cols))


def test_smooth_l1_and_the_distillation_terms_match_numpy():
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    x = np.array([-2.0, -0.5, 0.0, 0.3, 1.0, 4.0])
    np.testing.assert_allclose(distance_structure.smooth_l1(x), [1.5, 0.125, 0.0, 0.045, 0.5, 3.5], rtol=1e-12)
    instance, structure = np_distill(s, t)
    np.testing.assert_allclose(proclip.instance_loss(s, t), instance, rtol=1e-12)
    np.testing.assert_allclose(proclip.structure_loss(s, t), structure, rtol=1e-12)


def test_structure_gradient_is_finite_for_identical_rows():
    # Two identical captions give a zero distance, where sqrt has an infinite slope.
    s = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    grad = jax.grad(proclip.structure_loss)(s, np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]))
    assert np.all(np.isfinite(grad))


@functools.lru_cache(maxsize=1)
def _setup():
    config = tiny_config(batch_size=6)
    config.model.head_dim = config.model.embed_dim
    config.model.head_hidden_dim = 2 * config.model.embed_dim
    config.proclip = ml_collections.ConfigDict(dict(stage=1, embedder_workdir="", embedder_seed=3, distill_weight=0.7))
    model = build_model(config, VOCAB)
    x = batch(config, seed=0)
    init = jax.jit(lambda key: model.init(key, x["image"][:1], x["text"][:1])["params"])
    as64 = lambda tree: jax.tree.map(lambda p: np.asarray(p, np.float64), tree)  # noqa: E731
    params, teacher = as64(init(jax.random.PRNGKey(0))), as64(init(jax.random.PRNGKey(1)))
    extra = jax.tree.map(np.asarray, jax.jit(lambda p: proclip.init_extra(p, config))(params))
    return config, model, x, params, teacher, extra


def test_the_embedder_is_a_fresh_text_tower_and_the_teacher_a_copy():
    config, model, _, params, _, extra = _setup()
    init = jax.jit(lambda key: model.init(key, np.zeros((2, 16, 16, 3), np.float32), np.ones((2, 8), np.int32)))
    fresh = init(jax.random.PRNGKey(3))["params"]
    for name in proclip.EMBEDDER_PREFIXES:
        jax.tree.map(np.testing.assert_array_equal, extra["embedder"][name], jax.tree.map(np.asarray, fresh[name]))
    jax.tree.map(np.testing.assert_array_equal, extra["embedder"]["image_tower"], params["image_tower"])
    jax.tree.map(np.testing.assert_array_equal, extra["teacher"], params)


@pytest.mark.parametrize("stage", [1, 2])
def test_loss_matches_numpy_on_model_outputs(stage):
    # The towers compute in float32 whatever the params' dtype, hence the float32 tolerance.
    config, model, x, params, teacher, extra = _setup()
    config = ml_collections.ConfigDict(config.to_dict())
    config.proclip.stage = stage
    extra = dict(extra, teacher=teacher)  # a teacher that differs from the student
    loss, metrics = jax.jit(functools.partial(proclip.loss, model=model, config=config))(
        params, x, extra, jax.random.PRNGKey(0)
    )
    apply = jax.jit(lambda p: model.apply({"params": p}, x["image"], x["text"]))
    outputs = lambda p: jax.tree.map(np.asarray, apply(p))  # noqa: E731
    out, frozen = outputs(params), outputs(extra["embedder"])
    text = np_head(params["text_head"], frozen["text_embedding"])
    if stage == 1:
        instance, structure = np_distill(text, out["text_embedding"])
        expected = instance + structure
    else:
        instance, structure = np_distill(out["image_embedding"], outputs(teacher)["image_embedding"])
        clip = np_clip(out["image_embedding"], text, np.exp(out["logit_scale"]))
        np.testing.assert_allclose(metrics["clip_loss"], clip, rtol=1e-5)
        expected = clip + 0.7 * (instance + structure)
    np.testing.assert_allclose(metrics["instance_loss"], instance, rtol=1e-4)
    np.testing.assert_allclose(metrics["structure_loss"], structure, rtol=1e-4)
    np.testing.assert_allclose(loss, expected, rtol=1e-4)


def test_stage_one_trains_only_the_mlp():
    config, model, x, params, _, extra = _setup()
    grads = jax.jit(jax.grad(lambda p: proclip.loss(p, x, extra, None, model=model, config=config)[0]))(params)
    norms = {name: sum(float(np.sum(np.square(g))) for g in jax.tree.leaves(tree)) for name, tree in grads.items()}
    assert norms["text_head"] > 0
    assert all(v == 0 for k, v in norms.items() if k != "text_head"), norms


def test_unknown_stage_is_refused_before_tracing():
    config = ml_collections.ConfigDict(_setup()[0].to_dict())
    config.proclip.stage = 3
    with pytest.raises(ConfigError, match="config.proclip.stage"):
        proclip.validate(config)
