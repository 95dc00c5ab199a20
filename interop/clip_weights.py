"""OpenAI CLIP, open_clip and Hugging Face `CLIPModel` checkpoints -> our two-tower params.

    params, model_config = convert_clip("ViT-B-32.safetensors")   # or an HF folder, or a .pt/.bin state dict

`params` is {"image_tower/...": array, ...} for models/two_tower.py; `model_config` holds the
config.model entries the checkpoint needs (image and text tower sizes and switches, embed_dim) plus
`image_size`. The mapping is exact, not approximate: CLIP's class token plus its position embedding
becomes our `cls`, CLIP's bias-free patch convolution gets a zero bias, its final LayerNorm on the
class token is our encoder's `ln_final` (applied to every token, read at the class token), and the
text tower pools where transformers does (convert_clip).
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from configs.errors import ConfigError
from interop import attention, hf_encoder, mismatch
from interop.bert_weights import flatten
from interop.safe_load import load_state_dict

_OPENAI_BLOCK = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}


def is_openai_layout(state: dict) -> bool:
    return "visual.class_embedding" in state or "token_embedding.weight" in state


def openai_to_hf(state: dict) -> dict[str, np.ndarray]:
    """Renames an OpenAI / open_clip state dict to Hugging Face CLIPModel names (splitting fused q/k/v)."""
    out = {}
    for key, value in state.items():
        tower, rest = ("vision_model", key[len("visual.") :]) if key.startswith("visual.") else ("text_model", key)
        if rest.startswith("transformer.resblocks."):
            _, _, i, name = rest.split(".", 3)
            prefix = f"{tower}.encoder.layers.{i}."
            if name.startswith("attn.in_proj_"):
                kind = name.rsplit("_", 1)[1]  # weight | bias
                for part, chunk in zip(("q", "k", "v"), np.split(value, 3, axis=0), strict=True):
                    out[f"{prefix}self_attn.{part}_proj.{kind}"] = chunk
                continue
            name = name.replace("attn.out_proj", "self_attn.out_proj")
            for old, new in _OPENAI_BLOCK.items():
                name = name.replace(old + ".", new + ".")
            out[prefix + name] = value
            continue
        renamed = {
            "class_embedding": "vision_model.embeddings.class_embedding",
            "conv1.weight": "vision_model.embeddings.patch_embedding.weight",
            "ln_pre.weight": "vision_model.pre_layrnorm.weight",
            "ln_pre.bias": "vision_model.pre_layrnorm.bias",
            "ln_post.weight": "vision_model.post_layernorm.weight",
            "ln_post.bias": "vision_model.post_layernorm.bias",
            "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
            "ln_final.weight": "text_model.final_layer_norm.weight",
            "ln_final.bias": "text_model.final_layer_norm.bias",
        }
        if key == "visual.positional_embedding":
            out["vision_model.embeddings.position_embedding.weight"] = value
        elif key == "positional_embedding":
            out["text_model.embeddings.position_embedding.weight"] = value
        elif key == "visual.proj":
            out["visual_projection.weight"] = value.T
        elif key == "text_projection":
            out["text_projection.weight"] = value.T
        elif key == "logit_scale":
            out["logit_scale"] = value
        elif rest in renamed and (tower == "vision_model") == renamed[rest].startswith("vision_model"):
            out[renamed[rest]] = value
        else:
            out[key] = value  # not CLIP's: reported as unused by the converter
    return out


def read_hf_clip_config(path: str) -> dict:
    """config.json of a Hugging Face CLIPModel folder (or the folder of a file); {} when there is none."""
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    config_path = os.path.join(folder, "config.json")
    if not os.path.isfile(config_path):
        return {}
    with open(config_path, encoding="utf-8") as f:
        return json.load(f)


def convert_clip(
    path: str, *, vision_heads: int | None = None, text_heads: int | None = None, activation: str | None = None
) -> tuple[dict[str, np.ndarray], dict]:
    """Checkpoint -> ({our param path: array}, {"image": ..., "text": ..., "embed_dim", "image_size", ...}).

    Every setting is read per tower: heads, activation and LayerNorm epsilon from an HF folder's
    config.json, MLP widths from the weights. OpenAI / open_clip state dicts have no config: their heads
    are width // 64 (both use 64-dimensional heads), activation `quick_gelu` (OpenAI's weights; open_clip's
    own trainings without "-quickgelu" in the model name use `gelu`), unless given (`activation`: both
    towers). Text pooling follows transformers: at the highest id (`argmax`) for OpenAI state dicts and
    for an HF eos_token_id of 2 (the legacy value), else at the first eos_token_id (`eos`); a `pool`
    entry that our exporter wrote (export_hf.py) wins.
    """
    state = load_state_dict(path)
    hf = read_hf_clip_config(path)
    openai = is_openai_layout(state)
    if openai:
        state = openai_to_hf(state)
    vision_hf, text_hf = hf.get("vision_config", {}), hf.get("text_config", {})
    required = (
        "vision_model.embeddings.class_embedding",
        "vision_model.embeddings.patch_embedding.weight",
        "text_model.embeddings.token_embedding.weight",
        "text_model.embeddings.position_embedding.weight",
        "visual_projection.weight",
        "text_projection.weight",
    )
    mismatch.raise_mismatch(
        repr(path),
        [f"{k} is missing there" for k in required if k not in state],
        "pass an OpenAI CLIP, open_clip (ViT image tower, CLIP text tower) or Hugging Face CLIPModel checkpoint.",
    )
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        if name not in state:
            mismatch.raise_mismatch(repr(path), [f"{name} is missing there"], "pass a complete CLIP checkpoint.")
        used.add(name)
        return state[name]

    v_width = state["vision_model.embeddings.class_embedding"].shape[0]
    t_width = state["text_model.embeddings.token_embedding.weight"].shape[1]
    towers = {}
    for tower, model, hf_tower, width, heads in (
        ("image", "vision_model", vision_hf, v_width, vision_heads),
        ("text", "text_model", text_hf, t_width, text_heads),
    ):
        towers[tower] = hf_encoder.tower_settings(state, {} if openai else hf_tower, model, width, repr(path),
                                                  "quick_gelu", 1e-5)  # fmt: skip
        towers[tower]["heads"] = heads or towers[tower]["heads"]
        towers[tower]["activation"] = activation or towers[tower]["activation"]

    patch_weight = take("vision_model.embeddings.patch_embedding.weight")  # [W, 3, p, p]
    positions = take("vision_model.embeddings.position_embedding.weight")  # [1 + (S/p)^2, W]
    grid = math.isqrt(positions.shape[0] - 1)
    if grid * grid != positions.shape[0] - 1:
        raise ConfigError(
            f"{path!r} has {positions.shape[0] - 1} patch positions, not a square grid; pass a square-image ViT."
        )
    patch = patch_weight.shape[-1]
    image_size = int(vision_hf.get("image_size", grid * patch))
    if image_size // patch != grid:
        raise ConfigError(
            f"{path!r} says image_size {image_size} but has a {grid}x{grid} patch grid; fix its config.json."
        )
    image_tower = {
        "patchify": {"kernel": patch_weight.transpose(2, 3, 1, 0), "bias": np.zeros(v_width, np.float32)},
        "pos_embedding": positions[1:][None],
        "cls": (take("vision_model.embeddings.class_embedding") + positions[0])[None, None],
        "ln_pre": attention.layer_norm(
            take("vision_model.pre_layrnorm.weight"), take("vision_model.pre_layrnorm.bias")
        ),
        "encoder": hf_encoder.encoder_from_hf(take, "vision_model", towers["image"], "post_layernorm"),
    }
    text_positions = take("text_model.embeddings.position_embedding.weight")
    text_tower = {
        "token_embedding": {"embedding": take("text_model.embeddings.token_embedding.weight")},
        "pos_embedding": text_positions[None],
        "encoder": hf_encoder.encoder_from_hf(take, "text_model", towers["text"], "final_layer_norm"),
    }
    params = {
        "image_tower": image_tower,
        "text_tower": text_tower,
        "image_projection": {"kernel": take("visual_projection.weight").T},
        "text_projection": {"kernel": take("text_projection.weight").T},
        "logit_scale": take("logit_scale") if "logit_scale" in state else np.float32(math.log(1 / 0.07)),
        "logit_bias": np.float32(0.0),
    }
    mismatch.unused_keys(state, used, repr(path), "a CLIP ViT model")
    pool, eos = ("argmax", 0) if openai else _text_pooling(text_hf, repr(path))
    model_config = {
        "image": {"width": v_width, "patch_size": patch, "conv_stem_depth": 0, "pool": "cls", "ln_pre": True,
                  **towers["image"]},
        "text": {"kind": "clip", "width": t_width, "max_len": text_positions.shape[0], "pool": pool,
                 "eos_token_id": eos, "causal": True, **towers["text"]},
        "embed_dim": state["visual_projection.weight"].shape[0],
        "image_size": image_size,
        "vocab_size": state["text_model.embeddings.token_embedding.weight"].shape[0],
        "image_projection": "linear",
        "text_projection": "linear",
    }  # fmt: skip
    return flatten(params), model_config


# transformers' CLIPTextConfig default end-of-text id (CLIP's BPE vocabulary): what a config.json without one gets.
_HF_DEFAULT_EOS = 49407


def _text_pooling(text_hf: dict, source: str) -> tuple[str, int]:
    """(pool, eos_token_id) of transformers' CLIPTextTransformer for this text config."""
    if "pool" in text_hf:  # written by export_hf.py: our pooling, which transformers matches on our tokenizers
        if text_hf["pool"] not in ("last", "argmax", "eos"):
            raise ConfigError(
                f"{source} has text pool {text_hf['pool']!r}; its config.json must say last, argmax or eos."
            )
        return text_hf["pool"], int(text_hf.get("eos_token_id", 0)) if text_hf["pool"] == "eos" else 0
    eos = text_hf.get("eos_token_id", _HF_DEFAULT_EOS)
    if not isinstance(eos, int):
        raise ConfigError(f"{source} has eos_token_id {eos!r}; transformers' CLIP pools at one id, so set one int.")
    # transformers keeps argmax pooling for the legacy id 2 (configs from before its PR #24773).
    return ("argmax", 0) if eos == 2 else ("eos", eos)
