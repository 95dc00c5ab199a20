"""CLIP-Refine's RaFA and HyCD against NumPy float64 references, both feature choices, on a tiny model."""

import functools

import jax
import ml_collections
import numpy as np
import pytest

from losses import clip_refine
from models.two_tower import build_model
from tests.tiny_training import VOCAB, batch, tiny_config


@pytest.fixture(autouse=True)
def float64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


def np_log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def np_hycd(student, teacher, alpha, temperature):
    """Loops over rows: KL(q_i || p_i) T^2 with q_i = α onehot + (1 - α) softmax(teacher_i / T), both directions."""

    def one_way(s, t):
        total = 0.0
        for i in range(len(s)):
            q = (1 - alpha) * np.exp(np_log_softmax(t[i] / temperature))
            q[i] += alpha
            log_p = np_log_softmax(s[i] / temperature)
            total += sum(qj * (np.log(qj) - lpj) for qj, lpj in zip(q, log_p, strict=True) if qj > 0)
        return total / len(s) * temperature**2

    return 0.5 * (one_way(student, teacher) + one_way(student.T, teacher.T))


def test_rafa_is_the_element_mean_squared_distance_to_the_shared_reference():
    rng = np.random.default_rng(0)
    f, g, z = (rng.normal(size=(5, 7)) for _ in range(3))
    expected = sum((f[i, d] - z[i, d]) ** 2 + (g[i, d] - z[i, d]) ** 2 for i in range(5) for d in range(7)) / 35
    np.testing.assert_allclose(clip_refine.rafa_loss(f, g, z), expected, rtol=1e-12)


@pytest.mark.parametrize("alpha,temperature", [(0.5, 1.0), (0.2, 2.0), (0.0, 0.5)])
def test_hycd_matches_the_numpy_reference(alpha, temperature):
    rng = np.random.default_rng(1)
    student, teacher = rng.normal(size=(6, 6)) * 3, rng.normal(size=(6, 6)) * 3
    np.testing.assert_allclose(
        clip_refine.hycd_loss(student, teacher, alpha, temperature),
        np_hycd(student, teacher, alpha, temperature),
        rtol=1e-10,
    )


def test_hycd_with_alpha_one_is_the_clip_loss_at_temperature_t():
    rng = np.random.default_rng(2)
    student, teacher = rng.normal(size=(5, 5)) * 4, rng.normal(size=(5, 5))
    t = 2.0
    rows = -np.mean(np.diag(np_log_softmax(student / t)))
    columns = -np.mean(np.diag(np_log_softmax(student.T / t)))
    np.testing.assert_allclose(
        clip_refine.hycd_loss(student, teacher, 1.0, t), 0.5 * (rows + columns) * t**2, rtol=1e-10
    )


def _options(**changes):
    options = dict(features="raw", alpha=0.5, temperature=1.0, rafa_weight=1.0, hycd_weight=1.0, contrastive_weight=0.0)
    return ml_collections.ConfigDict(dict(options, **changes))


def _model_and_params(config, seed):
    model = build_model(config, VOCAB)
    x = batch(config, seed=seed)
    params = model.init(jax.random.PRNGKey(seed), x["image"][:1], x["text"][:1])["params"]
    return model, jax.tree.map(lambda p: np.asarray(p, np.float64), params), x


@pytest.mark.parametrize("features", ["raw", "normalized"])
def test_loss_matches_numpy_on_model_outputs(features):
    """The code's choice ("raw": un-normalised features, unscaled logits) and the paper's reading
    ("normalized": unit embeddings, logits scaled by each model's logit scale) differ as documented.
    The towers compute in float32 whatever the params' dtype, hence the float32 tolerance."""
    config = tiny_config(batch_size=8)
    config.clip_refine = _options(features=features, contrastive_weight=0.3)
    model, params, x = _model_and_params(config, 0)
    _, teacher, _ = _model_and_params(config, 1)
    teacher["logit_scale"] = np.float64(np.log(20.0))
    rng = jax.random.PRNGKey(3)
    loss_fn = jax.jit(functools.partial(clip_refine.loss, model=model, config=config))
    loss, metrics = loss_fn(params, x, {"teacher": teacher}, rng)

    apply = jax.jit(lambda p: model.apply({"params": p}, x["image"], x["text"]))
    out, tea = jax.tree.map(np.asarray, apply(params)), jax.tree.map(np.asarray, apply(teacher))
    key = "features" if features == "raw" else "embedding"
    f, g = out[f"image_{key}"], out[f"text_{key}"]
    z = np.asarray(jax.random.normal(rng, f.shape, f.dtype))  # one reference row per pair, for both
    rafa = np.mean((f - z) ** 2) + np.mean((g - z) ** 2)
    if features == "raw":
        student, teach = f @ g.T, tea["image_features"] @ tea["text_features"].T
    else:
        student = np.exp(out["logit_scale"]) * f @ g.T
        teach = 20.0 * tea["image_embedding"] @ tea["text_embedding"].T
    hycd = np_hycd(student, teach, 0.5, 1.0)
    cosine = np.exp(out["logit_scale"]) * out["image_embedding"] @ out["text_embedding"].T
    clip = -0.5 * (np.mean(np.diag(np_log_softmax(cosine))) + np.mean(np.diag(np_log_softmax(cosine.T))))
    np.testing.assert_allclose(metrics["rafa_loss"], rafa, rtol=1e-5)
    np.testing.assert_allclose(metrics["hycd_loss"], hycd, rtol=1e-5)
    np.testing.assert_allclose(loss, rafa + hycd + 0.3 * clip, rtol=1e-5)
    gap = np.linalg.norm(out["image_embedding"].mean(0) - out["text_embedding"].mean(0))
    np.testing.assert_allclose(metrics["batch_modality_gap"], gap, rtol=1e-5)


def test_the_teacher_gets_no_gradient_and_starts_as_a_copy():
    config = tiny_config(batch_size=8)
    config.clip_refine = _options()
    model, params, x = _model_and_params(config, 0)
    extra = clip_refine.init_extra(params, config)
    loss = lambda e: clip_refine.loss(params, x, e, jax.random.PRNGKey(0), model=model, config=config)[0]  # noqa: E731
    grads = jax.jit(jax.grad(loss))(extra)
    assert all(np.all(np.asarray(leaf) == 0) for leaf in jax.tree.leaves(grads))
    jax.tree.map(np.testing.assert_array_equal, extra["teacher"], params)
