"""CCP's loss, memory banks, asymmetric batch normalisation and calibration against NumPy references."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from evaluation.calibration import calibrate
from losses import ccp
from tests.contrastive_reference import float64, unit_rows

B, D, L, Q, TAU = 6, 4, 2, 8, 0.1


def _reference_direction(anchors, in_batch, languages, queue, valid):
    losses = []
    for i in range(B):
        candidates = [in_batch[j] for j in range(B) if languages[j] == languages[i]]
        candidates += [queue[languages[i], q] for q in range(Q) if valid[languages[i], q]]
        logits = np.array([anchors[i] @ c for c in candidates]) / TAU
        losses.append(np.log(np.sum(np.exp(logits))) - anchors[i] @ in_batch[i] / TAU)
    return np.mean(losses)


def test_symmetric_infonce_with_same_language_candidates_and_bank():
    rng = np.random.default_rng(0)
    centres, contexts = unit_rows(rng.normal(size=(B, D))), unit_rows(rng.normal(size=(B, D)))
    languages = np.array([0, 1, 0, 0, 1, 1])
    queue = unit_rows(rng.normal(size=(L, Q, D)))
    valid = rng.random((L, Q)) < 0.5
    expected = (
        _reference_direction(centres, contexts, languages, queue, valid)
        + _reference_direction(contexts, centres, languages, queue, valid)
    ) / 2
    with float64():
        loss, metrics = ccp.ccp_loss(*(jnp.asarray(x) for x in (centres, contexts, languages, queue, valid)), TAU)
        assert float(loss) == pytest.approx(expected, rel=1e-10)
    assert float(metrics["bank_filled"]) == pytest.approx(valid.mean())


def test_enqueue_is_a_fifo_per_language():
    extra = {
        "queue": jnp.zeros((L, 4, 1)),
        "valid": jnp.zeros((L, 4), bool),
        "pointer": jnp.array([3, 0], jnp.int32),
    }
    languages = jnp.array([0, 1, 0, 0, 1])
    values = jnp.arange(1.0, 6.0)[:, None]
    out = ccp.enqueue(extra, values, languages)
    # Language 0 writes 1, 3, 4 at slots 3, 0, 1 (wrapping); language 1 writes 2, 5 at slots 0, 1.
    np.testing.assert_array_equal(out["queue"][..., 0], [[3, 4, 0, 1], [2, 5, 0, 0]])
    np.testing.assert_array_equal(out["valid"], [[True, True, False, True], [True, True, False, False]])
    np.testing.assert_array_equal(out["pointer"], [2, 2])


def test_batch_standardize_matches_numpy():
    x = np.random.default_rng(1).normal(size=(B, D)) * 3 + 2
    expected = (x - x.mean(0)) / np.sqrt(x.var(0) + ccp.BN_EPS)
    with float64():
        np.testing.assert_allclose(ccp.batch_standardize(jnp.asarray(x)), expected, rtol=1e-12)


def test_init_extra_makes_empty_banks():
    config = ml_collections.ConfigDict({"model": {"embed_dim": 4}, "ccp": {"queue_size": 16, "num_languages": 2}})
    extra = ccp.ccp_init_extra(None, config)
    assert extra["queue"].shape == (2, 16, 4) and not bool(extra["valid"].any())
    np.testing.assert_array_equal(extra["pointer"], [0, 0])


def test_calibration_centres_each_language_then_normalises():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(10, 3)) + np.array([5.0, 0, 0])
    languages = np.array([0] * 6 + [1] * 4)
    out = calibrate(x, languages)
    for language in (0, 1):
        rows = x[languages == language]
        centred = rows - rows.mean(0)
        np.testing.assert_allclose(out[languages == language], centred / np.linalg.norm(centred, axis=1, keepdims=True))
