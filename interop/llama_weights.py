"""Hugging Face LlamaForCausalLM checkpoints (Llama 2, 1.5-Pints, TinyLlama, ...) <-> our Llama-style DecoderLM.

    params, decoder = convert_llama("path/to/llama_folder")
    export_hf_llama(params, config, "runs/pints/hf", tokenizer_path="runs/pints/tokenizer.model")

`params` is the DecoderLM's parameter tree as {path: array} ("block0/attn/query/kernel", ...); `decoder` the
config.model.decoder entries the checkpoint needs (sizes and the switches: rms_norm, rope, swiglu, kv_heads,
bias, tie_embeddings). The model then computes what transformers computes from the same weights
(tests/test_llama_decoder.py). `export_hf_llama` writes a trained decoder back as such a folder (model.safetensors,
config.json, tokenizer.model) that transformers' LlamaForCausalLM loads with the same logits. Imports no jax or
PyTorch.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np

from configs.errors import ConfigError
from input_pipeline.llama_tokenizer import vocabulary_order
from input_pipeline.token_ids import BOS_ID, EOS_ID, PAD_ID
from interop import mismatch
from interop.bert_weights import flatten
from interop.export_hf import write_hf_folder
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


def check_exportable(config) -> None:
    """Raises ConfigError, naming the switches, unless config.model is a Llama-style decoder."""
    d = config.model.decoder
    switches = {"norm": "rms_norm", "position": "rope", "mlp": "swiglu"}
    wrong = [f"config.model.decoder.{k} is {d[k]!r}, not {v!r}" for k, v in switches.items() if d[k] != v]
    if config.model.kind != "decoder" or wrong:
        raise ConfigError(
            "Only a Llama-style decoder exports as a LlamaForCausalLM folder"
            + (f" ({'; '.join(wrong)})" if wrong else f", not config.model.kind={config.model.kind!r}")
            + "; train it with configs/lm.py's llama_style() (configs/pints.py) or from a Llama folder."
        )


def export_hf_llama(params, config, folder: str, *, tokenizer_path: str) -> str:
    """A Llama-style decoder's `params` (the DecoderLM tree of a run of `config`) -> `folder` holding
    model.safetensors, config.json and the run's tokenizer.model, which transformers' LlamaForCausalLM and
    LlamaTokenizer load. A run that started from a Llama folder (text.tokenizer 'llama') gets its rows back in
    Llama's id order and Llama's special ids; a run with its own tokenizer keeps the project's (padding 0, BOS 2,
    EOS 3), which its tokenizer.model also holds. Returns `folder`."""
    check_exportable(config)
    d = config.model.decoder
    flat = flatten(params)
    rows, width = flat["token_embedding/embedding"].shape
    heads, depth = d.heads, d.depth
    layout = dict(depth=depth, bias=d.bias, tie_embeddings=d.tie_embeddings)
    state = {}
    for name, ours in _names(layout).items():
        value = np.asarray(flat[ours], np.float32)
        if ours.endswith(("query/kernel", "key/kernel", "value/kernel")):
            value = value.reshape(width, -1)  # [W, heads, Dh] -> [W, heads * Dh]
        elif ours.endswith(("query/bias", "key/bias", "value/bias")):
            value = value.reshape(-1)
        elif ours.endswith("out/kernel"):
            value = value.reshape(-1, width)  # [heads, Dh, W] -> [heads * Dh, W]
        if name.endswith("proj.weight") or name == "lm_head.weight":
            value = value.T  # [in, out] -> torch's [out, in]
        state[name if name == "lm_head.weight" else f"model.{name}"] = np.ascontiguousarray(value)
    relabelled = config.text.tokenizer == "llama"
    if relabelled:  # our rows are Llama's taken in vocabulary_order: put them back
        back = np.argsort(vocabulary_order(rows))
        for name in ("model.embed_tokens.weight", "lm_head.weight"):
            if name in state:
                state[name] = np.ascontiguousarray(state[name][back])
    specials = dict(bos_token_id=1, eos_token_id=2) if relabelled else dict(
        bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID
    )  # fmt: skip
    config_json = dict(
        architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=int(rows), hidden_size=int(width),
        intermediate_size=int(flat["block0/mlp/fc1/kernel"].shape[1]), num_hidden_layers=depth,
        num_attention_heads=heads, num_key_value_heads=d.kv_heads or heads, head_dim=width // heads,
        hidden_act="silu", rms_norm_eps=d.norm_eps, max_position_embeddings=d.max_len, rope_theta=d.rope_theta,
        rope_parameters={"rope_type": "default", "rope_theta": d.rope_theta}, attention_bias=d.bias, mlp_bias=d.bias,
        tie_word_embeddings=d.tie_embeddings, torch_dtype="float32", **specials,
    )  # fmt: skip
    write_hf_folder(state, config_json, folder)
    if os.path.isdir(tokenizer_path):  # a Llama folder (text.tokenizer_path of a run started from one)
        tokenizer_path = os.path.join(tokenizer_path, "tokenizer.model")
    shutil.copyfile(tokenizer_path, os.path.join(folder, "tokenizer.model"))
    return folder
