"""Float64 NumPy reference for the contrastive losses: values and hand-derived gradients.

Independent of losses/: plain matrices, no tiling, no JAX. Padded rows (valid=False) are simply
dropped before computing, and get zero gradient.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Reference(NamedTuple):
    loss: float
    d_image: np.ndarray  # [B, D]
    d_text: np.ndarray  # [B, D]
    d_logit_scale: float
    d_logit_bias: float  # 0 for the softmax loss
    i2t_accuracy: float  # softmax only
    t2i_accuracy: float


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    peak = a.max(axis=axis, keepdims=True)
    return np.squeeze(peak, axis) + np.log(np.exp(a - peak).sum(axis=axis))


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * a))  # overflow-free form of 1 / (1 + exp(-a))


def reference(kind, image, text, logit_scale, logit_bias=0.0, valid=None) -> Reference:
    """Loss and gradients of the softmax (CLIP) or sigmoid (SigLIP) loss, mean over valid rows."""
    image, text = np.asarray(image, np.float64), np.asarray(text, np.float64)
    valid = np.ones(len(image), bool) if valid is None else np.asarray(valid, bool)
    x, y = image[valid], text[valid]
    n = len(x)
    scale = np.exp(float(logit_scale))
    logits = scale * x @ y.T
    eye = np.eye(n)
    i2t = t2i = 0.0
    if kind == "softmax":
        row_lse, col_lse = _logsumexp(logits, 1), _logsumexp(logits, 0)
        row_prob, col_prob = np.exp(logits - row_lse[:, None]), np.exp(logits - col_lse[None, :])
        loss = np.mean(0.5 * (row_lse + col_lse) - np.diag(logits))
        d_logits = (0.5 * (row_prob + col_prob) - eye) / n
        i2t = np.mean(logits.argmax(1) == np.arange(n))
        t2i = np.mean(logits.argmax(0) == np.arange(n))
    else:
        signed = (2.0 * eye - 1.0) * (logits + float(logit_bias))
        loss = np.sum(np.logaddexp(0.0, -signed)) / n
        d_logits = -(2.0 * eye - 1.0) * _sigmoid(-signed) / n
    d_image, d_text = np.zeros_like(image), np.zeros_like(text)
    d_image[valid] = scale * d_logits @ y
    d_text[valid] = scale * d_logits.T @ x
    d_bias = float(d_logits.sum()) if kind == "sigmoid" else 0.0
    return Reference(float(loss), d_image, d_text, float(np.sum(d_logits * logits)), d_bias, i2t, t2i)


def grouped_infonce(x, y, scale, valid, group):
    """Symmetric InfoNCE in float64 over the valid rows; a column of the same group as the row (not the
    row's own) is not a negative."""
    rows = np.flatnonzero(valid)
    total = []
    for a, b in ((x, y), (y, x)):
        losses = []
        for i in rows:
            columns = [j for j in rows if j == i or group[j] != group[i]]
            logits = scale * (b[columns] @ a[i])
            losses.append(np.log(np.sum(np.exp(logits - logits.max()))) + logits.max() - scale * a[i] @ b[i])
        total.append(np.mean(losses))
    return np.mean(total)


@contextlib.contextmanager
def float64():
    """jax_enable_x64 inside the block, restored afterwards."""
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", previous)


def unit_rows(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


class EmbeddingsAsTowers:
    """Stands in for the two-tower model in objective tests: the batch already holds the embeddings.

    Like TwoTower, both inputs are optional: `apply({"params": params})` gives just the scalars."""

    def apply(self, variables, image=None, text=None):
        normalise = lambda a: a / jnp.linalg.norm(a, axis=-1, keepdims=True)  # noqa: E731
        out = {"logit_scale": variables["params"]["logit_scale"], "logit_bias": variables["params"]["logit_bias"]}
        if image is not None:
            out["image_embedding"] = normalise(image)
        if text is not None:
            out["text_embedding"] = normalise(text)
        return out
