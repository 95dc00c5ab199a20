"""The pre-norm encoder layers that Hugging Face's CLIP and SigLIP models share <-> our models/transformer.py
Encoder, and the per-tower settings their config.json holds.

HF layer i: layer_norm1, self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1, mlp.fc2 (torch Linear weights
[out, in]); ours: block{i}/ln1, attn/{query,key,value,out}, ln2, mlp/fc1, mlp/fc2.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from configs.errors import ConfigError
from interop import attention

# transformers' activation names -> ours (models/transformer.py: ACTIVATIONS). gelu_new and
# gelu_pytorch_tanh are both the tanh approximation; ours exports as gelu_pytorch_tanh.
FROM_HF_ACTIVATION = {
    "gelu": "gelu",
    "quick_gelu": "quick_gelu",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_new": "gelu_tanh",
}
TO_HF_ACTIVATION = {"gelu": "gelu", "quick_gelu": "quick_gelu", "gelu_tanh": "gelu_pytorch_tanh"}


def tower_settings(
    state: Mapping, hf_tower: Mapping, model: str, width: int, source: str, default_activation: str, default_eps: float
) -> dict:
    """{"heads", "activation", "layer_norm_eps", "depth", "mlp_dim"} of one tower (`model`: "vision_model" or
    "text_model") from its HF config ({} when there is none) and its weights. mlp_dim 0 means 4 x width (the
    config default)."""
    act = hf_tower.get("hidden_act", default_activation)
    if act not in FROM_HF_ACTIVATION:
        raise ConfigError(
            f"{source} uses the activation {act!r}, which our towers do not have; pass a checkpoint with one of "
            f"{sorted(FROM_HF_ACTIVATION)}."
        )
    prefix = f"{model}.encoder.layers."
    layers = len({k[len(prefix) :].split(".")[0] for k in state if k.startswith(prefix)})
    mlp_dim = state[f"{prefix}0.mlp.fc1.weight"].shape[0] if layers else 0
    return {
        "heads": int(hf_tower.get("num_attention_heads") or width // 64),
        "activation": FROM_HF_ACTIVATION[act],
        "layer_norm_eps": float(hf_tower.get("layer_norm_eps", default_eps)),
        "depth": layers,
        "mlp_dim": 0 if mlp_dim == 4 * width else mlp_dim,
    }


def encoder_from_hf(take: Callable[[str], np.ndarray], tower: str, settings: Mapping, final_ln: str) -> dict:
    """Our Encoder's params (blocks and ln_final, HF's `final_ln`) from the HF names `take` returns the arrays of."""
    blocks = _blocks_from_hf(take, tower, settings["depth"], settings["heads"])
    blocks["ln_final"] = attention.layer_norm(take(f"{tower}.{final_ln}.weight"), take(f"{tower}.{final_ln}.bias"))
    return blocks


def _blocks_from_hf(take: Callable[[str], np.ndarray], tower: str, layers: int, heads: int) -> dict:
    blocks = {}
    for i in range(layers):
        p = f"{tower}.encoder.layers.{i}."
        attn = {}
        for ours, hf in (("query", "q"), ("key", "k"), ("value", "v")):
            weight, bias = take(f"{p}self_attn.{hf}_proj.weight"), take(f"{p}self_attn.{hf}_proj.bias")
            attn[ours] = attention.qkv_from_linear(weight, bias, heads)
        attn["out"] = attention.out_from_linear(
            take(f"{p}self_attn.out_proj.weight"), take(f"{p}self_attn.out_proj.bias"), heads
        )
        blocks[f"block{i}"] = {
            "ln1": attention.layer_norm(take(f"{p}layer_norm1.weight"), take(f"{p}layer_norm1.bias")),
            "attn": attn,
            "ln2": attention.layer_norm(take(f"{p}layer_norm2.weight"), take(f"{p}layer_norm2.bias")),
            "mlp": mlp_from_hf(take, f"{p}mlp."),
        }
    return blocks


def mlp_from_hf(take: Callable[[str], np.ndarray], prefix: str) -> dict:
    return {
        fc: attention.dense_from_linear(take(f"{prefix}{fc}.weight"), take(f"{prefix}{fc}.bias"))
        for fc in ("fc1", "fc2")
    }


def mlp_to_hf(mlp: Mapping, prefix: str) -> dict[str, np.ndarray]:
    out = {}
    for fc in ("fc1", "fc2"):
        out[f"{prefix}{fc}.weight"], out[f"{prefix}{fc}.bias"] = np.asarray(mlp[fc]["kernel"]).T, mlp[fc]["bias"]
    return out


def encoder_to_hf(params: Mapping, tower: str, layers: int) -> dict[str, np.ndarray]:
    """Inverse of encoder_from_hf: our Encoder's blocks -> HF names."""
    out = {}
    for i in range(layers):
        block, p = params[f"block{i}"], f"{tower}.encoder.layers.{i}."
        for ours, hf in (("query", "q"), ("key", "k"), ("value", "v")):
            out[f"{p}self_attn.{hf}_proj.weight"], out[f"{p}self_attn.{hf}_proj.bias"] = attention.linear_from_qkv(
                block["attn"][ours]
            )
        out[f"{p}self_attn.out_proj.weight"], out[f"{p}self_attn.out_proj.bias"] = attention.linear_from_out(
            block["attn"]["out"]
        )
        for ln, hf in (("ln1", "layer_norm1"), ("ln2", "layer_norm2")):
            out[f"{p}{hf}.weight"], out[f"{p}{hf}.bias"] = block[ln]["scale"], block[ln]["bias"]
        out.update(mlp_to_hf(block["mlp"], f"{p}mlp."))
    return out


def as_float32(state: Mapping) -> dict[str, np.ndarray]:
    """C-contiguous float32 arrays for safetensors. np.require, not np.ascontiguousarray: the latter turns 0-d
    arrays (CLIP's logit_scale) into shape [1], which transformers rejects as a size mismatch."""
    return {k: np.require(np.asarray(v, np.float32), requirements="C") for k, v in state.items()}
