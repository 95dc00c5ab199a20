"""Hugging Face BertModel / sentence-transformers checkpoints -> our `bert` text tower (models/bert.py).

    params, text_config = convert_bert("path/to/all-MiniLM-L6-v2", max_len=24)

`params` is {"text_tower/...": array}; `text_config` the config.model.text entries the checkpoint
needs (kind, width, depth, heads, mlp_dim, activation, layer_norm_eps, pool).
"""

from __future__ import annotations

import json
import os

import numpy as np

from configs.errors import ConfigError
from interop import attention, mismatch
from interop.safe_load import load_state_dict

_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "quick_gelu": "quick_gelu"}
_PREFIXES = ("bert.", "model.", "0.auto_model.")


def read_bert_config(path: str) -> dict:
    """config.json of a Hugging Face / sentence-transformers folder, plus its pooling mode; {} for a bare file."""
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    config_path = os.path.join(folder, "config.json")
    if not os.path.isfile(config_path):
        return {}
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    pooling_path = os.path.join(folder, "1_Pooling", "config.json")
    if os.path.isfile(pooling_path):
        with open(pooling_path, encoding="utf-8") as f:
            pooling = json.load(f)
        config["pool"] = "first" if pooling.get("pooling_mode_cls_token") else "mean"
    return config


def convert_bert(path: str, max_len: int, heads: int | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """Checkpoint (file or folder) -> ({"text_tower/...": array}, config.model.text entries).

    `heads` is read from the folder's config.json unless given. BERT's segment-0 embedding is added to the
    first `max_len` position embeddings (the only ones our tower keeps), which is exact for one-segment text.
    """
    state = load_state_dict(path)
    for prefix in _PREFIXES:
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in state.items()}
    state = {k.replace(".gamma", ".weight").replace(".beta", ".bias"): v for k, v in state.items()}
    hf = read_bert_config(path)
    heads = heads or hf.get("num_attention_heads")
    if not heads:
        raise ConfigError(f"{path!r} has no config.json beside it; pass the number of attention heads (heads=...).")
    required = ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight"]
    missing = [k for k in required if k not in state]
    mismatch.raise_mismatch(repr(path), [f"{k} is missing there" for k in missing], "pass a BERT-family checkpoint.")
    width = state["embeddings.word_embeddings.weight"].shape[1]
    positions = state["embeddings.position_embeddings.weight"]
    if max_len > positions.shape[0]:
        raise ConfigError(
            f"config.model.text.max_len ({max_len}) exceeds the {positions.shape[0]} positions of {path!r}; lower it."
        )
    depth = len({k.split(".")[2] for k in state if k.startswith("encoder.layer.")})
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        if name not in state:
            mismatch.raise_mismatch(repr(path), [f"{name} is missing there"], "pass a complete BERT checkpoint.")
        used.add(name)
        return state[name]

    segment = (
        take("embeddings.token_type_embeddings.weight")[0] if "embeddings.token_type_embeddings.weight" in state else 0
    )
    used.add("embeddings.position_embeddings.weight")
    tower = {
        "token_embedding": {"embedding": take("embeddings.word_embeddings.weight")},
        "pos_embedding": (positions[:max_len] + segment)[None],
        "ln_embed": attention.layer_norm(take("embeddings.LayerNorm.weight"), take("embeddings.LayerNorm.bias")),
    }
    for i in range(depth):
        p = f"encoder.layer.{i}."
        attn = {
            name: attention.qkv_from_linear(
                take(f"{p}attention.self.{name}.weight"), take(f"{p}attention.self.{name}.bias"), heads
            )
            for name in ("query", "key", "value")
        }
        attn["out"] = attention.out_from_linear(
            take(f"{p}attention.output.dense.weight"), take(f"{p}attention.output.dense.bias"), heads
        )
        tower[f"block{i}"] = {
            "attn": attn,
            "ln1": attention.layer_norm(
                take(f"{p}attention.output.LayerNorm.weight"), take(f"{p}attention.output.LayerNorm.bias")
            ),
            "mlp": {
                "fc1": attention.dense_from_linear(
                    take(f"{p}intermediate.dense.weight"), take(f"{p}intermediate.dense.bias")
                ),
                "fc2": attention.dense_from_linear(take(f"{p}output.dense.weight"), take(f"{p}output.dense.bias")),
            },
            "ln2": attention.layer_norm(take(f"{p}output.LayerNorm.weight"), take(f"{p}output.LayerNorm.bias")),
        }
    used |= {k for k in state if k.startswith("pooler.")}  # BERT's NSP pooler: not used by sentence encoders
    mismatch.unused_keys(state, used, repr(path), "a BERT encoder")
    mlp_dim = state["encoder.layer.0.intermediate.dense.weight"].shape[0] if depth else 4 * width
    act = hf.get("hidden_act", "gelu")
    if act not in _ACTIVATIONS:
        raise ConfigError(f"{path!r} uses activation {act!r}; the bert tower supports {sorted(_ACTIVATIONS)}.")
    text_config = {
        "kind": "bert",
        "width": width,
        "depth": depth,
        "heads": heads,
        "mlp_dim": 0 if mlp_dim == 4 * width else mlp_dim,  # 0: the config default, 4 x width
        "activation": _ACTIVATIONS[act],
        "layer_norm_eps": float(hf.get("layer_norm_eps", 1e-12)),
        "pool": hf.get("pool", "mean"),
    }
    return flatten({"text_tower": tower}), text_config


def flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dict -> {"a/b/c": leaf}."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}/{key}" if prefix else key
        flat.update(flatten(value, name) if isinstance(value, dict) else {name: np.asarray(value, np.float32)})
    return flat
