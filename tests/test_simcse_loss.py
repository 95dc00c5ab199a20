"""SimCSE and MultiCSR losses against NumPy float64 references written from the papers' formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from losses import simcse
from tests.contrastive_reference import float64, unit_rows

B, D, TAU = 6, 5, 0.05


def _embeddings(seed: int, count: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [unit_rows(rng.normal(size=(B, D))) for _ in range(count)]


def _log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.sum(np.exp(x - m), axis=1, keepdims=True))


def test_unsupervised_is_cross_entropy_over_the_second_views():
    a, p, _ = _embeddings(0)
    expected = np.mean([-np.log(np.exp(a[i] @ p[i] / TAU) / np.sum(np.exp(a[i] @ p.T / TAU))) for i in range(B)])
    with float64():
        loss, metrics = simcse.simcse_loss(simcse.simcse_logits(jnp.asarray(a), jnp.asarray(p), TAU))
        assert float(loss) == pytest.approx(expected, rel=1e-10)
    assert float(metrics["accuracy"]) == np.mean(np.argmax(a @ p.T, axis=1) == np.arange(B))


@pytest.mark.parametrize("weight", [0.0, 1.5])
def test_supervised_adds_every_contradiction_and_the_log_weight_on_the_own_one(weight):
    a, p, n = _embeddings(1)
    losses = []
    for i in range(B):
        own = np.exp(a[i] @ p[i] / TAU)
        negatives = np.exp(a[i] @ n.T / TAU)
        negatives[i] *= np.exp(weight)  # SimCSE adds the weight to the logit: a factor e^w on its exp
        losses.append(-np.log(own / (np.sum(np.exp(a[i] @ p.T / TAU)) + np.sum(negatives))))
    with float64():
        logits = simcse.simcse_logits(jnp.asarray(a), jnp.asarray(p), TAU, jnp.asarray(n), weight)
        assert logits.shape == (B, 2 * B)
        assert float(simcse.simcse_loss(logits)[0]) == pytest.approx(np.mean(losses), rel=1e-10)


def _masked_reference(a, candidates, false_negatives, mode, loss):
    logits = a @ candidates.T / TAU
    if mode == "exclude":
        keep = ~false_negatives
        rows = [logits[i][keep[i]] for i in range(B)]
        positions = [int(np.sum(keep[i][:i])) for i in range(B)]  # column i's place among the kept ones
        log_probs = [r - np.log(np.sum(np.exp(r))) for r in rows]
    else:  # the official code: weight 0 on the logit
        logits = np.where(false_negatives, 0.0, logits)
        log_probs = list(_log_softmax(logits))
        positions = list(range(B))
    if loss == "ce":
        return -np.mean([lp[k] for lp, k in zip(log_probs, positions, strict=True)])
    entries = []
    for lp, k in zip(log_probs, positions, strict=True):
        probs = np.exp(lp)
        entries += [np.log(q) if j == k else np.log(1 - q) for j, q in enumerate(probs)]
        entries += [np.log(1.0)] * (logits.shape[1] - len(probs))  # excluded entries: p = 0, y = 0
    return -np.mean(np.maximum(entries, -100.0))


@pytest.mark.parametrize("mode", ["exclude", "zero"])
@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_multicsr_masking_and_loss_choices(mode, loss):
    a, p, n = _embeddings(2)
    candidates = np.concatenate([p, n])
    false_negatives = np.zeros((B, 2 * B), bool)
    false_negatives[0, 3] = false_negatives[2, 0] = false_negatives[4, 9] = false_negatives[5, 11] = True
    expected = _masked_reference(a, candidates, false_negatives, mode, loss)
    with float64():
        logits = simcse.simcse_logits(jnp.asarray(a), jnp.asarray(p), TAU, jnp.asarray(n))
        value, metrics = simcse.simcse_loss(logits, jnp.asarray(false_negatives), mode, loss)
        assert float(value) == pytest.approx(expected, rel=1e-9)
    assert float(metrics["false_negatives_masked"]) == pytest.approx(4 / B)


def test_excluding_a_false_negative_equals_dropping_its_column():
    a, p, _ = _embeddings(3)
    mask = np.zeros((B, B), bool)
    mask[:, 2] = True
    mask[2, 2] = False  # row 2 keeps its own positive
    with float64():
        full = simcse.simcse_loss(simcse.simcse_logits(jnp.asarray(a), jnp.asarray(p), TAU), jnp.asarray(mask))[0]
        # Rows other than 2 without column 2, row 2 with every column: the same sum of per-row losses.
        logits = a @ p.T / TAU
        rows = [np.delete(logits[i], 2) if i != 2 else logits[i] for i in range(B)]
        labels = [i - (i > 2) if i != 2 else 2 for i in range(B)]
        expected = np.mean([np.log(np.sum(np.exp(r))) - r[k] for r, k in zip(rows, labels, strict=True)])
        assert float(full) == pytest.approx(expected, rel=1e-10)


def test_gradients_are_finite_with_excluded_entries():
    a, p, n = (jnp.asarray(x, jnp.float32) for x in _embeddings(4))
    mask = jnp.zeros((B, 2 * B), bool).at[:, 7].set(True).at[1, 7].set(False)

    def value(a, p, n):
        return simcse.simcse_loss(simcse.simcse_logits(a, p, TAU, n), mask, "exclude", "bce")[0]

    grads = jax.grad(value, argnums=(0, 1, 2))(a, p, n)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)


def test_unknown_loss_is_named():
    with pytest.raises(ValueError, match="ce"):
        simcse.simcse_loss(jnp.zeros((2, 2)), loss="mse")
