"""The linear probe's logistic regression against scikit-learn, and its validation-chosen regularisation."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from threadpoolctl import threadpool_limits

from evaluation import linear_probe


def _blobs(n: int, dim: int, classes: int, noise: float, seed: int):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    labels = rng.integers(0, classes, size=n)
    return centres[labels] + noise * rng.normal(size=(n, dim)), labels


@pytest.mark.parametrize("l2", [1e-1, 1e-3])
def test_logistic_regression_matches_sklearn(l2):
    x, y = _blobs(240, 10, 4, noise=1.5, seed=0)
    params = linear_probe.fit_logistic_regression(x, y, 4, l2)
    reference = LogisticRegression(C=1.0 / (l2 * len(x)), max_iter=10_000, tol=1e-10).fit(x, y)
    logits = linear_probe.probe_logits(params, x)
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    np.testing.assert_allclose(probabilities, reference.predict_proba(x), atol=5e-4)
    np.testing.assert_allclose(params["w"].T, reference.coef_, atol=5e-3 * np.abs(reference.coef_).max())


def _objective(w, b, x, y, l2):
    """Mean cross-entropy + l2/2 ||w||^2, written out here."""
    logits = x @ w + b
    logits = logits - logits.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(logits).sum(axis=1))
    return np.mean(log_z - logits[np.arange(len(y)), y]) + 0.5 * l2 * np.sum(w * w)


def test_weak_l2_fit_reaches_sklearns_minimiser():
    # Nearly separable blobs at l2 = 1e-5: the ill-conditioned case where 300 L-BFGS steps stopped short.
    x, y = _blobs(600, 20, 5, noise=1.5, seed=0)
    train_x, train_y, held_x, held_y = x[:300], y[:300], x[300:], y[300:]
    l2 = 1e-5
    params = linear_probe.fit_logistic_regression(train_x, train_y, 5, l2)
    with threadpool_limits(1):  # small matrices: threads only contend
        reference = LogisticRegression(C=1.0 / (l2 * len(train_x)), max_iter=100_000, tol=1e-10).fit(train_x, train_y)
    ours = _objective(params["w"], params["b"], train_x, train_y, l2)
    minimum = _objective(reference.coef_.T, reference.intercept_, train_x, train_y, l2)
    assert params["converged"]
    assert ours == pytest.approx(minimum, rel=1e-8)
    predictions = np.argmax(linear_probe.probe_logits(params, held_x), axis=1)
    np.testing.assert_array_equal(predictions, reference.predict(held_x))
    assert np.mean(predictions == held_y) == reference.score(held_x, held_y)


def test_a_fit_stopped_early_says_so(monkeypatch):
    x, y = _blobs(300, 20, 5, noise=1.5, seed=0)
    stopped = linear_probe.fit_logistic_regression(x, y, 5, 1e-5, max_iterations=1)
    done = linear_probe.fit_logistic_regression(x, y, 5, 1e-5)
    assert not stopped["converged"]
    assert _objective(stopped["w"], stopped["b"], x, y, 1e-5) > _objective(done["w"], done["b"], x, y, 1e-5) + 1e-3
    fit = linear_probe.fit_logistic_regression
    monkeypatch.setattr(linear_probe, "fit_logistic_regression", lambda *a, **k: fit(*a, **k, max_iterations=1))
    split = (x[:100], y[:100])
    assert linear_probe.linear_probe(split, split, split, 5, l2_grid=(1e-5,))["converged"] == 0.0


def test_probe_picks_regularisation_on_validation_and_scores_test_like_sklearn():
    x, y = _blobs(600, 20, 5, noise=2.5, seed=1)
    train, validation, test = (x[:300], y[:300]), (x[300:400], y[300:400]), (x[400:], y[400:])
    grid = (1.0, 1e-2, 1e-4)
    m = linear_probe.linear_probe(train, validation, test, 5, l2_grid=grid)

    # Independent pipeline: z-score with train statistics, sklearn for each strength.
    def zscore(fit, *others):
        mean, std = fit.mean(0), fit.std(0) + 1e-6
        return [(a - mean) / std for a in (fit, *others)]

    tx, vx = zscore(train[0], validation[0])
    accuracies = [
        LogisticRegression(C=1 / (l2 * len(tx)), max_iter=10_000, tol=1e-10).fit(tx, train[1]).score(vx, validation[1])
        for l2 in grid
    ]
    best = grid[int(np.argmax(accuracies))]
    all_x, test_x = zscore(np.concatenate([train[0], validation[0]]), test[0])
    model = LogisticRegression(C=1 / (best * len(all_x)), max_iter=10_000, tol=1e-10)
    model.fit(all_x, np.concatenate([train[1], validation[1]]))
    assert m["l2"] == best
    assert m["acc1"] == pytest.approx(model.score(test_x, test[1]), abs=1 / len(test_x) + 1e-9)
    assert m["mean_per_class_recall"] == pytest.approx(
        balanced_accuracy_score(test[1], model.predict(test_x)), abs=0.02
    )
