"""PyTorch Linear weights <-> flax MultiHeadDotProductAttention kernels."""

from __future__ import annotations

import numpy as np


def qkv_from_linear(weight: np.ndarray, bias: np.ndarray, heads: int) -> dict:
    """torch Linear [out=W, in=W] + [W] -> flax DenseGeneral {kernel [W, heads, W/heads], bias [heads, W/heads]}."""
    width = weight.shape[1]
    return {"kernel": weight.T.reshape(width, heads, -1), "bias": bias.reshape(heads, -1)}


def out_from_linear(weight: np.ndarray, bias: np.ndarray, heads: int) -> dict:
    """torch Linear [W, W] + [W] -> flax attention output {kernel [heads, W/heads, W], bias [W]}."""
    return {"kernel": weight.T.reshape(heads, -1, weight.shape[0]), "bias": bias}


def dense_from_linear(weight: np.ndarray, bias: np.ndarray | None = None) -> dict:
    """torch Linear [out, in] (+ [out]) -> flax Dense {kernel [in, out] (, bias [out])}."""
    return {"kernel": weight.T} if bias is None else {"kernel": weight.T, "bias": bias}


def layer_norm(weight: np.ndarray, bias: np.ndarray) -> dict:
    return {"scale": weight, "bias": bias}


def linear_from_qkv(params: dict) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of qkv_from_linear."""
    kernel = np.asarray(params["kernel"])
    return kernel.reshape(kernel.shape[0], -1).T, np.asarray(params["bias"]).reshape(-1)


def linear_from_out(params: dict) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of out_from_linear."""
    kernel = np.asarray(params["kernel"])
    return kernel.reshape(-1, kernel.shape[-1]).T, np.asarray(params["bias"])
