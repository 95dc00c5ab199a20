"""big_vision SigLIP checkpoints (`.npz`, as google-research/big_vision saves them) -> our two-tower params.

    params, model_config = convert_big_vision_siglip("webli_en_b16_224_63724782.npz")

The file holds flax parameters under "params/" (or at the root): `img/` a ViT (`embedding` patch
convolution, `pos_embedding`, `Transformer/encoderblock_{i}` or, saved with scan, `encoderblock` stacked
over a leading depth axis, `encoder_norm`, `MAPHead_0`, an optional `head`), `txt/` the text transformer
(`Embed_0`, `pos_embedding`, `Encoder_0/...`, `head`), `t` the log logit scale and `b` the logit bias.
Its modules are flax's, as ours are, so the arrays keep their layout. big_vision's choices the file does
not record are the format's fixed ones: flax's tanh-approximated GELU and LayerNorm epsilon 1e-6, no
LayerNorm before the image encoder, a bidirectional text encoder read at its final position (pool_type
"last"). Heads come from the attention kernels' shapes.
"""

from __future__ import annotations

import math

import numpy as np

from configs.errors import ConfigError
from interop import mismatch
from interop.bert_weights import flatten

# Our names for big_vision's, in an encoder block and in the MAP head.
_MLP = {"MlpBlock_0": "mlp", "Dense_0": "fc1", "Dense_1": "fc2", "MultiHeadDotProductAttention_0": "attn"}
_BLOCK = {**_MLP, "LayerNorm_0": "ln1", "LayerNorm_1": "ln2"}
_MAP_HEAD = {**_MLP, "LayerNorm_0": "ln"}


def load_npz(path: str) -> dict[str, np.ndarray]:
    """{name without "params/": float32 array} of a big_vision .npz file."""
    with np.load(path, allow_pickle=False) as data:
        return {k.removeprefix("params/"): np.asarray(data[k], np.float32) for k in data.files}


def convert_big_vision_siglip(path: str) -> tuple[dict[str, np.ndarray], dict]:
    """.npz -> ({our param path: array}, {"image", "text", "embed_dim", "image_size", ...}) as convert_siglip."""
    state = load_npz(path)
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        if name not in state:
            mismatch.raise_mismatch(repr(path), [f"{name} is missing there"], "pass a big_vision SigLIP checkpoint.")
        used.add(name)
        return state[name]

    towers = {"image": _encoder(state, take, "img/Transformer/"), "text": _encoder(state, take, "txt/Encoder_0/")}
    image_tower = {
        "patchify": {"kernel": take("img/embedding/kernel"), "bias": take("img/embedding/bias")},
        "pos_embedding": take("img/pos_embedding"),
        "encoder": towers["image"][0],
        "map_head": _module(state, take, "img/MAPHead_0/", _MAP_HEAD),
    }
    text_tower = {
        "token_embedding": {"embedding": take("txt/Embed_0/embedding")},
        "pos_embedding": take("txt/pos_embedding"),
        "encoder": towers["text"][0],
    }
    params = {
        "image_tower": image_tower,
        "text_tower": text_tower,
        "text_projection": {"kernel": take("txt/head/kernel"), "bias": take("txt/head/bias")},
        "logit_scale": take("t").reshape(()),
        "logit_bias": take("b").reshape(()),
    }
    image_projection = "none"
    if "img/head/kernel" in state:  # an image tower trained with a head (out_dim set for both towers)
        params["image_projection"] = {"kernel": take("img/head/kernel"), "bias": take("img/head/bias")}
        image_projection = "affine"
    mismatch.unused_keys(state, used, repr(path), "a big_vision SigLIP model")
    kernel = image_tower["patchify"]["kernel"]  # [p, p, 3, W]
    patch, width = kernel.shape[0], kernel.shape[-1]
    grid = math.isqrt(image_tower["pos_embedding"].shape[1])
    if grid * grid != image_tower["pos_embedding"].shape[1]:
        raise ConfigError(f"{path!r} has {image_tower['pos_embedding'].shape[1]} patch positions, not a square grid; "
                          "pass a square-image SigLIP.")  # fmt: skip
    embed_dim = params["text_projection"]["kernel"].shape[1]
    image_out = params["image_projection"]["kernel"].shape[1] if image_projection == "affine" else width
    if embed_dim != image_out:
        raise ConfigError(f"{path!r} embeds text in {embed_dim} dimensions and images in {image_out}; "
                          "pass a SigLIP checkpoint whose towers share one embedding space.")  # fmt: skip
    fixed = {"activation": "gelu_tanh", "layer_norm_eps": 1e-6}  # flax's nn.gelu and nn.LayerNorm defaults
    model_config = {
        "image": {"width": width, "patch_size": patch, "conv_stem_depth": 0, "pool": "map", "ln_pre": False,
                  **towers["image"][1], **fixed},
        "text": {"kind": "clip", "width": text_tower["token_embedding"]["embedding"].shape[1],
                 "max_len": text_tower["pos_embedding"].shape[1], "pool": "final", "eos_token_id": 0, "causal": False,
                 **towers["text"][1], **fixed},
        "embed_dim": embed_dim,
        "image_size": grid * patch,
        "vocab_size": text_tower["token_embedding"]["embedding"].shape[0],
        "image_projection": image_projection,
        "text_projection": "affine",
    }  # fmt: skip
    return flatten(params), model_config


def _module(state: dict, take, prefix: str, names: dict, index: int | None = None) -> dict:
    """Every array under `prefix` as our nested params, big_vision's module names renamed by `names`;
    `index` picks one block of a scanned (stacked) encoder."""
    tree: dict = {}
    for name in [k for k in state if k.startswith(prefix)]:
        value = take(name)
        *parents, leaf = [names.get(p, p) for p in name[len(prefix) :].split("/")]
        node = tree
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value if index is None else value[index]
    return tree


def _encoder(state: dict, take, prefix: str) -> tuple[dict, dict]:
    """(our Encoder's params, {"depth", "heads", "mlp_dim"}) from blocks under `prefix`, scanned or not."""
    if f"{prefix}encoderblock/LayerNorm_0/scale" in state:
        depth = state[f"{prefix}encoderblock/LayerNorm_0/scale"].shape[0]
        blocks = {f"block{i}": _module(state, take, f"{prefix}encoderblock/", _BLOCK, i) for i in range(depth)}
    else:
        depth = len({k[len(prefix) :].split("/")[0] for k in state if k.startswith(f"{prefix}encoderblock_")})
        blocks = {f"block{i}": _module(state, take, f"{prefix}encoderblock_{i}/", _BLOCK) for i in range(depth)}
    if not depth:
        raise ConfigError(f"The checkpoint has no encoder blocks under {prefix!r}; pass a big_vision SigLIP .npz.")
    blocks["ln_final"] = _module(state, take, f"{prefix}encoder_norm/", {})
    width = blocks["ln_final"]["scale"].shape[0]
    mlp_dim = blocks["block0"]["mlp"]["fc1"]["kernel"].shape[1]
    heads = blocks["block0"]["attn"]["query"]["kernel"].shape[1]  # [W, heads, W / heads]
    return blocks, {"depth": depth, "heads": heads, "mlp_dim": 0 if mlp_dim == 4 * width else mlp_dim}
