"""Linear probe: multinomial logistic regression on frozen image features (NumPy + SciPy's L-BFGS-B).

Written here rather than taken from scikit-learn so that the core install stays lean
(SciPy already comes with jax); tests/test_eval_linear_probe.py checks it against
sklearn.linear_model.LogisticRegression.
"""

from __future__ import annotations

import contextlib

import numpy as np
import scipy.optimize

from evaluation.classification import classification_metrics

# L2 strengths searched on the validation split (per example: the loss is a mean), strongest first.
L2_GRID = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)


def _single_threaded_blas():
    """L-BFGS-B's small vector operations ran ~10x slower in CPU time on multithreaded OpenBLAS
    on a busy 2-core machine (measured), so BLAS gets one thread while a probe fits."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl comes with the eval extra; without it, just slower
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def fit_logistic_regression(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    l2: float,
    *,
    initial: dict[str, np.ndarray] | None = None,
    max_iterations: int = 300,
) -> dict[str, np.ndarray]:
    """Minimises mean cross-entropy + l2/2 ||w||^2 (bias unpenalised) over [N, D] features, [N] labels.

    Returns {"w": [D, C], "b": [C]}, starting from `initial` (e.g. the solution for a
    nearby l2) or zeros. scikit-learn's LogisticRegression(C=c) solves the same problem
    with l2 = 1 / (c * N).
    """
    x = np.asarray(features, np.float64)
    n, dim = x.shape
    one_hot = np.eye(num_classes)[labels]

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = flat[:-num_classes].reshape(dim, num_classes), flat[-num_classes:]
        logits = x @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        log_z = np.log(np.sum(np.exp(logits), axis=1))
        loss = np.mean(log_z - np.sum(logits * one_hot, axis=1)) + 0.5 * l2 * np.sum(w * w)
        residual = (np.exp(logits - log_z[:, None]) - one_hot) / n  # d loss / d logits
        return loss, np.concatenate([(x.T @ residual + l2 * w).ravel(), residual.sum(axis=0)])

    if initial is None:
        start = np.zeros(dim * num_classes + num_classes)
    else:
        start = np.concatenate([initial["w"].ravel(), initial["b"]])
    with _single_threaded_blas():
        result = scipy.optimize.minimize(
            objective, start, jac=True, method="L-BFGS-B", options={"maxiter": max_iterations, "gtol": 1e-7}
        )
    return {"w": result.x[:-num_classes].reshape(dim, num_classes), "b": result.x[-num_classes:]}


def probe_logits(params: dict[str, np.ndarray], features: np.ndarray) -> np.ndarray:
    """[N, D] features -> [N, C] logits."""
    return features @ params["w"] + params["b"]


def standardize(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Each array z-scored with the per-dimension mean and std of `train` ([N, D]), so one L2 grid fits every model."""
    mean, std = train.mean(axis=0), train.std(axis=0) + 1e-6
    return [(x - mean) / std for x in (train, *others)]


def linear_probe(
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    l2_grid: tuple[float, ...] = L2_GRID,
) -> dict[str, float]:
    """Picks the L2 strength with the best validation accuracy, refits on train + validation, scores test.

    Each split is ([N, D] features, [N] labels). Returns classification_metrics on the
    test split plus `l2`, the strength chosen (the strongest among equals).
    """
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = train, validation, test
    fit_x, held_out_x = standardize(train_x, val_x)
    accuracies, params = [], None
    for l2 in l2_grid:  # strongest first, each fit warm-started from the previous one
        params = fit_logistic_regression(fit_x, train_y, num_classes, l2, initial=params)
        accuracies.append(np.mean(np.argmax(probe_logits(params, held_out_x), axis=1) == val_y))
    best = l2_grid[int(np.argmax(accuracies))]
    fit_x, held_out_x = standardize(np.concatenate([train_x, val_x]), test_x)
    params = fit_logistic_regression(fit_x, np.concatenate([train_y, val_y]), num_classes, best)
    return {**classification_metrics(probe_logits(params, held_out_x), test_y), "l2": float(best)}
