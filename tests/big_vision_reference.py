"""An independent NumPy forward of big_vision's SigLIP two towers, written from the .npz format (the flax
modules of big_vision/models/vit.py and proj/image_text/text_transformer.py), and random .npz files of it.

Shares no code with models/ or interop/: parameters are read by their big_vision names.
"""

from __future__ import annotations

import numpy as np


def _layer_norm(x: np.ndarray, w: dict, name: str) -> np.ndarray:
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-6) * w[f"{name}/scale"] + w[f"{name}/bias"]


def _gelu(x: np.ndarray) -> np.ndarray:  # flax's nn.gelu: the tanh approximation
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def _dense(x: np.ndarray, w: dict, name: str) -> np.ndarray:
    return x @ w[f"{name}/kernel"] + w[f"{name}/bias"]


def _attention(queries: np.ndarray, tokens: np.ndarray, w: dict, name: str) -> np.ndarray:
    """flax MultiHeadDotProductAttention: kernels [W, heads, head_dim], out [heads, head_dim, W]."""
    q, k, v = (np.einsum("bnw,whd->bnhd", x, w[f"{name}/{p}/kernel"]) + w[f"{name}/{p}/bias"]
               for p, x in (("query", queries), ("key", tokens), ("value", tokens)))  # fmt: skip
    logits = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(q.shape[-1])
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    out = np.einsum("bhqk,bkhd->bqhd", weights, v)
    return np.einsum("bqhd,hdw->bqw", out, w[f"{name}/out/kernel"]) + w[f"{name}/out/bias"]


def _mlp(x: np.ndarray, w: dict, name: str) -> np.ndarray:
    return _dense(_gelu(_dense(x, w, f"{name}/Dense_0")), w, f"{name}/Dense_1")


def _encoder(x: np.ndarray, w: dict, prefix: str) -> np.ndarray:
    """Pre-norm blocks (no mask: both towers attend both ways), then encoder_norm."""
    scanned = f"{prefix}encoderblock/LayerNorm_0/scale" in w
    names = [k for k in w if k.startswith(f"{prefix}encoderblock")]
    depth = (
        w[f"{prefix}encoderblock/LayerNorm_0/scale"].shape[0]
        if scanned
        else len({k.split("/")[-3] for k in names if "LayerNorm_0" in k})
    )
    for i in range(depth):
        start = f"{prefix}encoderblock/" if scanned else f"{prefix}encoderblock_{i}/"
        block = {k[len(start) :]: w[k][i] if scanned else w[k] for k in names if k.startswith(start)}
        y = _layer_norm(x, block, "LayerNorm_0")
        x = x + _attention(y, y, block, "MultiHeadDotProductAttention_0")
        x = x + _mlp(_layer_norm(x, block, "LayerNorm_1"), block, "MlpBlock_0")
    return _layer_norm(x, w, f"{prefix}encoder_norm")


def image_features(w: dict, images: np.ndarray) -> np.ndarray:
    """images [B, S, S, 3] -> [B, D]: patches, + pos_embedding, encoder, MAP head (, head)."""
    kernel = w["params/img/embedding/kernel"]  # [p, p, 3, W]
    patch, width = kernel.shape[0], kernel.shape[-1]
    batch, grid = images.shape[0], images.shape[1] // patch
    x = images[:, : grid * patch, : grid * patch].reshape(batch, grid, patch, grid, patch, 3)
    x = x.transpose(0, 1, 3, 2, 4, 5).reshape(batch, grid * grid, patch * patch * 3)
    x = x @ kernel.reshape(-1, width) + w["params/img/embedding/bias"] + w["params/img/pos_embedding"]
    x = _encoder(x, w, "params/img/Transformer/")
    head = "params/img/MAPHead_0"
    probe = np.broadcast_to(w[f"{head}/probe"], (batch, 1, width))
    x = _attention(probe, x, w, f"{head}/MultiHeadDotProductAttention_0")
    x = (x + _mlp(_layer_norm(x, w, f"{head}/LayerNorm_0"), w, f"{head}/MlpBlock_0"))[:, 0]
    return _dense(x, w, "params/img/head") if "params/img/head/kernel" in w else x


def text_features(w: dict, tokens: np.ndarray) -> np.ndarray:
    """tokens [B, L] -> [B, D]: embeddings + pos_embedding, encoder, the last position, head."""
    x = w["params/txt/Embed_0/embedding"][tokens] + w["params/txt/pos_embedding"][:, : tokens.shape[1]]
    x = _encoder(x, w, "params/txt/Encoder_0/")
    return _dense(x[:, -1], w, "params/txt/head")


def logits(w: dict, images: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """SigLIP's [texts, images] logits: cosine similarity x exp(t) + b."""
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    similarity = unit(text_features(w, tokens)) @ unit(image_features(w, images)).T
    return similarity * np.exp(w["params/t"][0]) + w["params/b"][0]


def random_checkpoint(rng: np.random.Generator, *, scanned: bool, image_head: bool = False) -> dict[str, np.ndarray]:
    """A small random big_vision SigLIP checkpoint {npz name: array}: image width 16 (heads 2, MLP 40, depth 2,
    patch 4, 3x3 grid), text width 12 (heads 3, MLP 48, depth 2, vocabulary 30, 6 positions), embeddings 16."""
    w: dict[str, np.ndarray] = {}

    def put(name: str, *shape: int, scale: float = 0.3, mean: float = 0.0) -> None:
        w[f"params/{name}"] = (mean + scale * rng.normal(size=shape)).astype(np.float32)

    def blocks(prefix: str, width: int, heads: int, mlp: int, depth: int) -> None:
        stack = (depth,) if scanned else ()
        for i in range(1 if scanned else depth):
            p = f"{prefix}encoderblock/" if scanned else f"{prefix}encoderblock_{i}/"
            for ln in ("LayerNorm_0", "LayerNorm_1"):
                put(f"{p}{ln}/scale", *stack, width, mean=1.0), put(f"{p}{ln}/bias", *stack, width)
            attention(f"{p}MultiHeadDotProductAttention_0", width, heads, stack)
            put(f"{p}MlpBlock_0/Dense_0/kernel", *stack, width, mlp), put(f"{p}MlpBlock_0/Dense_0/bias", *stack, mlp)
            put(f"{p}MlpBlock_0/Dense_1/kernel", *stack, mlp, width), put(f"{p}MlpBlock_0/Dense_1/bias", *stack, width)
        put(f"{prefix}encoder_norm/scale", width, mean=1.0), put(f"{prefix}encoder_norm/bias", width)

    def attention(p: str, width: int, heads: int, stack: tuple = ()) -> None:
        for part in ("query", "key", "value"):
            put(f"{p}/{part}/kernel", *stack, width, heads, width // heads)
            put(f"{p}/{part}/bias", *stack, heads, width // heads)
        put(f"{p}/out/kernel", *stack, heads, width // heads, width), put(f"{p}/out/bias", *stack, width)

    put("img/embedding/kernel", 4, 4, 3, 16), put("img/embedding/bias", 16), put("img/pos_embedding", 1, 9, 16)
    blocks("img/Transformer/", 16, 2, 40, 2)
    put("img/MAPHead_0/probe", 1, 1, 16)
    attention("img/MAPHead_0/MultiHeadDotProductAttention_0", 16, 2)
    put("img/MAPHead_0/LayerNorm_0/scale", 16, mean=1.0), put("img/MAPHead_0/LayerNorm_0/bias", 16)
    put("img/MAPHead_0/MlpBlock_0/Dense_0/kernel", 16, 40), put("img/MAPHead_0/MlpBlock_0/Dense_0/bias", 40)
    put("img/MAPHead_0/MlpBlock_0/Dense_1/kernel", 40, 16), put("img/MAPHead_0/MlpBlock_0/Dense_1/bias", 16)
    if image_head:
        put("img/head/kernel", 16, 16), put("img/head/bias", 16)
    put("txt/Embed_0/embedding", 30, 12), put("txt/pos_embedding", 1, 6, 12)
    blocks("txt/Encoder_0/", 12, 3, 48, 2)
    put("txt/head/kernel", 12, 16), put("txt/head/bias", 16)
    w["params/t"], w["params/b"] = np.array([2.3], np.float32), np.array([-4.0], np.float32)
    return w
