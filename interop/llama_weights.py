"""Hugging Face LlamaForCausalLM checkpoints (Llama 2, 1.5-Pints, TinyLlama, ...) -> our Llama-style DecoderLM.

    params, decoder = convert_llama("path/to/llama_folder")

`params` is the DecoderLM's parameter tree as {path: array} ("block0/attn/query/kernel", ...); `decoder` the
config.model.decoder entries the checkpoint needs (sizes and the switches: rms_norm, rope, swiglu, kv_heads,
bias, tie_embeddings). The model then computes what transformers computes from the same weights
(tests/test_llama_decoder.py). Imports no jax or PyTorch.
"""

from __future__ import annotations

import json
import os

import numpy as np

from configs.errors import ConfigError
from interop import mismatch
from interop.safe_load import load_state_dict

_PROJECTIONS = {"q_proj": "query", "k_proj": "key", "v_proj": "value"}
_MLP = {"gate_proj": "gate", "up_proj": "fc1", "down_proj": "fc2"}


def is_llama(path: str) -> bool:
    """Whether the folder `path` (or the folder holding the file `path`) has a Llama config.json."""
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    try:
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
            return json.load(f).get("model_type") == "llama"
    except (OSError, ValueError):
        return False


def read_llama_config(path: str) -> dict:
    """config.json of the folder `path` (or of the folder holding the file `path`); raises unless it is a Llama."""
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    config_path = os.path.join(folder, "config.json")
    if not os.path.isfile(config_path):
        raise ConfigError(f"{path!r} has no config.json beside it; pass the Hugging Face folder of the checkpoint.")
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    if config.get("model_type") != "llama":
        raise ConfigError(f"{config_path} describes a {config.get('model_type')!r} model; pass a Llama checkpoint.")
    return config


def decoder_settings(hf: dict) -> dict:
    """config.model.decoder entries for the Llama config.json `hf`; raises for what our decoder cannot compute."""
    width, heads = hf["hidden_size"], hf["num_attention_heads"]
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}  # transformers 5 / 4 spellings
    unsupported = [
        f"{key} is {hf.get(key)!r}, not {want!r}"
        for key, want in (("hidden_act", "silu"), ("head_dim", width // heads))
        if hf.get(key, want) != want
    ]
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        unsupported.append(f"its rope scaling is {rope.get('rope_type', rope.get('type'))!r}")
    if hf.get("attention_bias", False) != hf.get("mlp_bias", False):
        unsupported.append("it has biases in attention or the MLP but not both")
    mismatch.raise_mismatch(
        "config.json", unsupported, "our decoder computes plain Llama (SiLU, head_dim = width / heads, no scaling)."
    )
    return dict(
        width=width, depth=hf["num_hidden_layers"], heads=heads, kv_heads=hf.get("num_key_value_heads") or heads,
        mlp_dim=hf["intermediate_size"], norm="rms_norm", norm_eps=hf.get("rms_norm_eps", 1e-6), position="rope",
        rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10_000.0))), mlp="swiglu",
        bias=bool(hf.get("attention_bias", False)), tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
    )  # fmt: skip


def convert_llama(path: str) -> tuple[dict[str, np.ndarray], dict]:
    """Checkpoint folder -> ({DecoderLM param path: float32 array}, config.model.decoder entries)."""
    decoder = decoder_settings(read_llama_config(path))
    state = {k.removeprefix("model."): v for k, v in load_state_dict(path).items()}
    names = _names(decoder)  # {torch name: our path}
    if decoder["tie_embeddings"]:
        state.pop("lm_head.weight", None)  # a copy of the embedding
    problems = [f"{k} is missing there" for k in names if k not in state]
    problems += [f"{k} has no place in the model" for k in sorted(state) if k not in names and "rotary" not in k]
    mismatch.raise_mismatch(repr(path), problems, "pass a LlamaForCausalLM checkpoint with its config.json.")
    heads, head_dim = decoder["heads"], decoder["width"] // decoder["heads"]
    params = {}
    for name, ours in names.items():
        value = state[name]
        if name.endswith("proj.weight") or name == "lm_head.weight":
            value = value.T  # torch [out, in] -> [in, out]
        if ours.endswith(("query/kernel", "key/kernel", "value/kernel")):
            value = value.reshape(value.shape[0], -1, head_dim)  # [W, heads, Dh]
        elif ours.endswith(("query/bias", "key/bias", "value/bias")):
            value = value.reshape(-1, head_dim)
        elif ours.endswith("out/kernel"):
            value = value.reshape(heads, head_dim, -1)  # [heads, Dh, W]
        params[ours] = np.ascontiguousarray(value, np.float32)
    return params, decoder


def _names(decoder: dict) -> dict[str, str]:
    """{checkpoint name (without "model."): DecoderLM param path} of a Llama of `decoder`'s settings."""
    names = {"embed_tokens.weight": "token_embedding/embedding", "norm.weight": "ln_final/scale"}
    if not decoder["tie_embeddings"]:
        names["lm_head.weight"] = "lm_head/kernel"
    kinds = ("weight", "bias") if decoder["bias"] else ("weight",)
    for i in range(decoder["depth"]):
        block, layer = f"block{i}", f"layers.{i}"
        names[f"{layer}.input_layernorm.weight"] = f"{block}/ln1/scale"
        names[f"{layer}.post_attention_layernorm.weight"] = f"{block}/ln2/scale"
        for module, ours in (*_PROJECTIONS.items(), ("o_proj", "out")):
            for kind in kinds:
                names[f"{layer}.self_attn.{module}.{kind}"] = f"{block}/attn/{ours}/{kind.replace('weight', 'kernel')}"
        for module, ours in _MLP.items():
            for kind in kinds:
                names[f"{layer}.mlp.{module}.{kind}"] = f"{block}/mlp/{ours}/{kind.replace('weight', 'kernel')}"
    return names
