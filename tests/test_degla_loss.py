"""DeGLA's losses against NumPy float64 references, the official TGC mask's selection, the EMA teacher."""

import functools

import jax
import ml_collections
import numpy as np
import pytest

from losses import degla
from models.two_tower import build_model
from tests.tiny_training import VOCAB, batch, tiny_config


@pytest.fixture(autouse=True)
def float64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


def np_ce(logits, target):
    """Cross-entropy of one row of logits at index `target`."""
    top = logits.max()
    return top + np.log(np.exp(logits - top).sum()) - logits[target]


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def np_degla(f, g, n, teacher_f, teacher_g, teacher_n, s, weights=(0.1, 0.1, 0.005), tgc_scale=10.0):
    """Row-by-row reference of L_g + w_igc L_IGC + w_tgc L_TGC + w_dist L_dist; n [B, K, D] own negatives."""
    b, k, _ = n.shape
    flat = n.reshape(b * k, -1)
    i2t = np.mean([np_ce(s * f[i] @ np.concatenate([g, flat]).T, i) for i in range(b)])
    t2i = np.mean([np_ce(s * g[i] @ f.T, i) for i in range(b)])
    igc = np.mean([np_ce(s * np.concatenate([[f[i] @ g[i]], n[i] @ f[i]]), 0) for i in range(b)])
    tgc = np.mean([np_ce(tgc_scale * np.concatenate([[g[i] @ teacher_g[i]], n[i] @ g[i]]), 0) for i in range(b)])
    dist = np.sum((f - teacher_f) ** 2) + np.sum((g - teacher_g) ** 2) + np.sum((flat - teacher_n) ** 2)
    parts = {"global_loss": 0.5 * (i2t + t2i), "igc_loss": igc, "tgc_loss": tgc, "distillation_loss": dist}
    return parts["global_loss"] + weights[0] * igc + weights[1] * tgc + weights[2] * dist, parts


def test_negclip_and_grounded_losses_match_numpy():
    rng = np.random.default_rng(0)
    b, k, d = 4, 3, 5
    f, g, tg = (unit(rng.normal(size=(b, d))) for _ in range(3))
    n = unit(rng.normal(size=(b, k, d)))
    _, parts = np_degla(f, g, n, f, tg, n.reshape(b * k, d), s=7.0)
    np.testing.assert_allclose(degla.negclip_loss(f, g, n.reshape(b * k, d), np.log(7.0)), parts["global_loss"])
    igc = np.mean([np_ce(7.0 * np.concatenate([[f[i] @ g[i]], n[i] @ f[i]]), 0) for i in range(b)])
    np.testing.assert_allclose(degla.grounded_loss(f, g, n, 7.0), igc, rtol=1e-12)
    np.testing.assert_allclose(degla.grounded_loss(g, tg, n, 10.0), parts["tgc_loss"], rtol=1e-12)


def test_official_tgc_negatives_are_what_the_block_mask_selects():
    """The official code: mask = eye(B).repeat(1, K) over B K negatives stored per example."""
    b, k = 5, 3
    negatives = np.arange(b * k, dtype=np.float64).reshape(b, k, 1)  # value = flat index
    mask = np.tile(np.eye(b, dtype=bool), (1, k))  # torch's Tensor.repeat(1, K)
    expected = np.stack([negatives.reshape(b * k, 1)[mask[i]] for i in range(b)])
    np.testing.assert_array_equal(degla.official_tgc_negatives(negatives), expected)
    own = np.arange(b * k).reshape(b, k)
    mismatched = np.mean(expected[..., 0] // k != np.arange(b)[:, None])
    assert mismatched > 0.5 and not np.array_equal(expected[..., 0], own)


def test_draw_negatives_picks_distinct_captions_of_each_example():
    tokens = np.arange(4 * 6 * 2).reshape(4, 6, 2)  # [B, T, L], row t of example b is unique
    drawn = np.asarray(degla.draw_negatives(tokens, 4, jax.random.PRNGKey(0)))
    assert drawn.shape == (4, 4, 2)
    for b in range(4):
        rows = {tuple(r) for r in drawn[b]}
        assert len(rows) == 4 and rows <= {tuple(r) for r in tokens[b]}
    with pytest.raises(ValueError, match="num_negatives must be in 1..6"):
        degla.draw_negatives(tokens, 7, jax.random.PRNGKey(0))


def test_ema_update():
    teacher, student = {"w": np.array([1.0, 2.0])}, {"w": np.array([3.0, -2.0])}
    np.testing.assert_allclose(degla.ema_update(teacher, student, 0.75)["w"], [1.5, 1.0])


def _options(**changes):
    options = dict(
        num_negatives=6,
        ema_momentum=0.9,
        igc_weight=0.1,
        tgc_weight=0.1,
        tgc_scale=10.0,
        distillation_weight=0.005,
        tgc_negatives="own",
    )
    return ml_collections.ConfigDict(dict(options, **changes))


def _setup(tgc_negatives):
    config = tiny_config(batch_size=4)
    config.degla = _options(tgc_negatives=tgc_negatives)
    model = build_model(config, VOCAB)
    x = batch(config, seed=0)
    x["hard_negatives"] = batch(config, seed=1, size=4 * 6)["text"].reshape(4, 6, -1)
    init = lambda seed: model.init(jax.random.PRNGKey(seed), x["image"][:1], x["text"][:1])["params"]  # noqa: E731
    as64 = lambda tree: jax.tree.map(lambda p: np.asarray(p, np.float64), tree)  # noqa: E731
    return config, model, x, as64(init(0)), as64(init(1))


@pytest.mark.parametrize("tgc_negatives", ["own", "official_code"])
def test_loss_matches_numpy_on_model_outputs(tgc_negatives):
    # The loss draws K = T negatives per example in a random order with its rng; the reference takes
    # the same draw, since the official block mask depends on the order (the other terms do not).
    # The towers compute in float32 whatever the params' dtype, hence the float32 tolerance.
    config, model, x, params, teacher = _setup(tgc_negatives)
    loss_fn = jax.jit(functools.partial(degla.loss, model=model, config=config))
    loss, metrics = loss_fn(params, x, {"teacher": teacher}, jax.random.PRNGKey(2))
    drawn = np.asarray(degla.draw_negatives(x["hard_negatives"], 6, jax.random.PRNGKey(2)))
    tokens = np.concatenate([x["text"], drawn.reshape(24, -1)])
    apply = jax.jit(lambda p: model.apply({"params": p}, x["image"], tokens))
    out, tea = jax.tree.map(np.asarray, apply(params)), jax.tree.map(np.asarray, apply(teacher))
    f, texts, tf, tt = out["image_embedding"], out["text_embedding"], tea["image_embedding"], tea["text_embedding"]
    n = texts[4:].reshape(4, 6, -1)
    s = np.exp(out["logit_scale"])
    expected, parts = np_degla(f, texts[:4], n, tf, tt[:4], tt[4:], s)
    if tgc_negatives == "official_code":
        picked = np.stack([texts[4:][np.tile(np.eye(4, dtype=bool), (1, 6))[i]] for i in range(4)])
        g = texts[:4]
        tgc = np.mean([np_ce(10.0 * np.concatenate([[g[i] @ tt[i]], picked[i] @ g[i]]), 0) for i in range(4)])
        expected += 0.1 * (tgc - parts["tgc_loss"])
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    for name in ("global_loss", "igc_loss", "distillation_loss"):
        np.testing.assert_allclose(metrics[name], parts[name], rtol=1e-5)
    assert float(metrics["aux"]["ema_momentum"]) == pytest.approx(0.9)


def test_update_extra_moves_the_teacher_by_the_configured_momentum():
    config, model, x, params, teacher = _setup("own")
    _, metrics = jax.jit(functools.partial(degla.loss, model=model, config=config))(
        params, x, {"teacher": teacher}, jax.random.PRNGKey(0)
    )
    # The momentum travels as a float32 scalar (aux is traced); the reference uses that value.
    momentum = float(np.float32(0.9))
    assert float(metrics["aux"]["ema_momentum"]) == momentum
    updated = degla.update_extra({"teacher": teacher}, params, metrics["aux"])["teacher"]
    expect = lambda t, p: momentum * t + (1.0 - momentum) * p  # noqa: E731
    jax.tree.map(lambda u, t, p: np.testing.assert_allclose(u, expect(t, p), rtol=1e-12), updated, teacher, params)
