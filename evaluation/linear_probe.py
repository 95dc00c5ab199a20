"""Linear probe: multinomial logistic regression on frozen image features (NumPy + SciPy's Newton-CG).

Written here rather than taken from scikit-learn so that the core install stays lean
(SciPy already comes with jax); tests/test_eval_linear_probe.py checks it against
sklearn.linear_model.LogisticRegression.
"""

from __future__ import annotations

import contextlib

import numpy as np
import scipy.optimize
from absl import logging

from evaluation.classification import classification_metrics

# L2 strengths searched on the validation split (per example: the loss is a mean), strongest first.
L2_GRID = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
# A fit counts as converged when no gradient entry exceeds this times l2: the weights are then within
# sqrt(#weights) * 1e-4 of the minimiser's, however weak l2 is.
GRADIENT_TOLERANCE = 1e-4
MAX_NEWTON_ITERATIONS = 200


def _single_threaded_blas():
    """The solver's small vector operations ran ~10x slower in CPU time on multithreaded OpenBLAS
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
    max_iterations: int = MAX_NEWTON_ITERATIONS,
) -> dict[str, np.ndarray]:
    """Minimises mean cross-entropy + l2/2 ||w||^2 (bias unpenalised) over [N, D] features, [N] labels.

    Returns {"w": [D, C], "b": [C], "converged": bool}, starting from `initial` (e.g. the solution
    for a nearby l2) or zeros. scikit-learn's LogisticRegression(C=c) solves the same problem with
    l2 = 1 / (c * N). `converged`: no entry of the objective's gradient exceeds GRADIENT_TOLERANCE * l2
    (the objective is l2-strongly convex in w, so that bounds the weights' distance to the minimiser
    alike for every l2).
    """
    x = np.asarray(features, np.float64)
    n, dim = x.shape
    one_hot = np.eye(num_classes)[labels]
    probabilities = {}  # softmax at the last point the objective saw, for the Hessian products there

    def unflatten(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return flat[:-num_classes].reshape(dim, num_classes), flat[-num_classes:]

    def objective(flat: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = unflatten(flat)
        logits = x @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        log_z = np.log(np.sum(np.exp(logits), axis=1))
        loss = np.mean(log_z - np.sum(logits * one_hot, axis=1)) + 0.5 * l2 * np.sum(w * w)
        probabilities.update(at=flat.copy(), p=np.exp(logits - log_z[:, None]))
        residual = (probabilities["p"] - one_hot) / n  # d loss / d logits
        return loss, np.concatenate([(x.T @ residual + l2 * w).ravel(), residual.sum(axis=0)])

    def hessian_times(flat: np.ndarray, direction: np.ndarray) -> np.ndarray:
        if not np.array_equal(probabilities.get("at"), flat):
            objective(flat)
        p = probabilities["p"]
        dw, db = unflatten(direction)
        d_logits = x @ dw + db
        d_residual = (p * d_logits - p * np.sum(p * d_logits, axis=1, keepdims=True)) / n  # softmax Jacobian
        return np.concatenate([(x.T @ d_residual + l2 * dw).ravel(), d_residual.sum(axis=0)])

    if initial is None:
        start = np.zeros(dim * num_classes + num_classes)
    else:
        start = np.concatenate([initial["w"].ravel(), initial["b"]])
    # Newton steps (conjugate gradients on exact Hessian products): at weak l2 the problem is badly
    # conditioned, and L-BFGS stopped at 300 steps left fits 0.6-1.3 accuracy points short of the
    # minimiser; it needed ~13,000 steps to converge where Newton needs ~35 (shapes, 64 classes, l2 1e-5).
    # SciPy's Newton-CG ends when a step's curvature falls below 3 eps, absolutely: unscaled, weak-l2
    # fits stopped with zero steps once gradients reached ~1e-6. Divided by sqrt(l2), they converge;
    # divided by l2 too, but with looser inner solves that took 1.5x longer (measured).
    scale = 1 / np.sqrt(l2)
    options = {"maxiter": max_iterations, "xtol": 1e-12}
    with _single_threaded_blas():
        result = scipy.optimize.minimize(
            lambda flat: tuple(scale * value for value in objective(flat)),
            start,
            jac=True,
            hessp=lambda flat, direction: scale * hessian_times(flat, direction),
            method="Newton-CG",
            options=options,
        )
    gradient = objective(result.x)[1]
    w, b = unflatten(result.x)
    return {"w": w, "b": b, "converged": bool(np.max(np.abs(gradient)) <= GRADIENT_TOLERANCE * l2)}


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
    test split plus `l2`, the strength chosen (the strongest among equals), and `converged`: 1.0
    when every fit reached the gradient tolerance, else 0.0 (and a warning names the fits).
    """
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = train, validation, test
    fit_x, held_out_x = standardize(train_x, val_x)
    accuracies, fits, params = [], {}, None
    for l2 in l2_grid:  # strongest first, each fit warm-started from the previous one
        params = fits[l2] = fit_logistic_regression(fit_x, train_y, num_classes, l2, initial=params)
        accuracies.append(np.mean(np.argmax(probe_logits(params, held_out_x), axis=1) == val_y))
    best = l2_grid[int(np.argmax(accuracies))]
    fit_x, held_out_x = standardize(np.concatenate([train_x, val_x]), test_x)
    params = fit_logistic_regression(fit_x, np.concatenate([train_y, val_y]), num_classes, best, initial=fits[best])
    unconverged = [l2 for l2, fit in [*fits.items(), ("refit", params)] if not fit["converged"]]
    if unconverged:
        logging.warning("Linear probe: the fits at l2 = %s stopped short of convergence.", unconverged)
    metrics = classification_metrics(probe_logits(params, held_out_x), test_y)
    return {**metrics, "l2": float(best), "converged": float(not unconverged)}
