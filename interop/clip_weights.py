"""OpenAI CLIP, open_clip and Hugging Face `CLIPModel` checkpoints -> our two-tower params.

    params, model_config = convert_clip("ViT-B-32.safetensors")   # or an HF folder, or a .pt/.bin state dict

`params` is {"image_tower/...": array, ...} for models/two_tower.py; `model_config` holds the
config.model entries the checkpoint needs (image and text tower sizes and switches, embed_dim) plus
`image_size`. The mapping is exact, not approximate: CLIP's class token plus its position embedding
becomes our `cls`, CLIP's bias-free patch convolution gets a zero bias, its final LayerNorm on the
class token is our encoder's `ln_final` (applied to every token, read at the class token), and the
text tower pools at the highest id (`pool="argmax"`: CLIP's end-of-text token).
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from configs.errors import ConfigError
from interop import attention, mismatch
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
    """Checkpoint -> ({our param path: array}, {"image": ..., "text": ..., "embed_dim", "image_size"}).

    Heads and activation come from an HF folder's config.json; for OpenAI / open_clip state dicts they
    are width // 64 (both use 64-dimensional heads) and `quick_gelu` (OpenAI's weights; open_clip's
    own trainings without "-quickgelu" in the model name use `gelu`) unless given.
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
    v_width = state["vision_model.embeddings.class_embedding"].shape[0]
    t_width = state["text_model.embeddings.token_embedding.weight"].shape[1]
    act = activation or (vision_hf.get("hidden_act", "quick_gelu") if not openai else "quick_gelu")
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        if name not in state:
            mismatch.raise_mismatch(repr(path), [f"{name} is missing there"], "pass a complete CLIP checkpoint.")
        used.add(name)
        return state[name]

    def encoder(tower: str, depth: int, heads: int, final_ln: str) -> dict:
        blocks = {}
        for i in range(depth):
            p = f"{tower}.encoder.layers.{i}."
            attn = {
                ours: attention.qkv_from_linear(
                    take(f"{p}self_attn.{hf}_proj.weight"), take(f"{p}self_attn.{hf}_proj.bias"), heads
                )
                for ours, hf in (("query", "q"), ("key", "k"), ("value", "v"))
            }
            attn["out"] = attention.out_from_linear(
                take(f"{p}self_attn.out_proj.weight"), take(f"{p}self_attn.out_proj.bias"), heads
            )
            blocks[f"block{i}"] = {
                "ln1": attention.layer_norm(take(f"{p}layer_norm1.weight"), take(f"{p}layer_norm1.bias")),
                "attn": attn,
                "ln2": attention.layer_norm(take(f"{p}layer_norm2.weight"), take(f"{p}layer_norm2.bias")),
                "mlp": {
                    "fc1": attention.dense_from_linear(take(f"{p}mlp.fc1.weight"), take(f"{p}mlp.fc1.bias")),
                    "fc2": attention.dense_from_linear(take(f"{p}mlp.fc2.weight"), take(f"{p}mlp.fc2.bias")),
                },
            }
        blocks["ln_final"] = attention.layer_norm(take(f"{tower}.{final_ln}.weight"), take(f"{tower}.{final_ln}.bias"))
        return blocks

    v_depth = _depth(state, "vision_model")
    t_depth = _depth(state, "text_model")
    v_heads = vision_heads or vision_hf.get("num_attention_heads") or v_width // 64
    t_heads = text_heads or text_hf.get("num_attention_heads") or t_width // 64
    patch_weight = take("vision_model.embeddings.patch_embedding.weight")  # [W, 3, p, p]
    positions = take("vision_model.embeddings.position_embedding.weight")  # [1 + (S/p)^2, W]
    grid = math.isqrt(positions.shape[0] - 1)
    if grid * grid != positions.shape[0] - 1:
        raise ConfigError(
            f"{path!r} has {positions.shape[0] - 1} patch positions, not a square grid; pass a square-image ViT."
        )
    image_tower = {
        "patchify": {"kernel": patch_weight.transpose(2, 3, 1, 0), "bias": np.zeros(v_width, np.float32)},
        "pos_embedding": positions[1:][None],
        "cls": (take("vision_model.embeddings.class_embedding") + positions[0])[None, None],
        "ln_pre": attention.layer_norm(
            take("vision_model.pre_layrnorm.weight"), take("vision_model.pre_layrnorm.bias")
        ),
        "encoder": encoder("vision_model", v_depth, v_heads, "post_layernorm"),
    }
    text_positions = take("text_model.embeddings.position_embedding.weight")
    text_tower = {
        "token_embedding": {"embedding": take("text_model.embeddings.token_embedding.weight")},
        "pos_embedding": text_positions[None],
        "encoder": encoder("text_model", t_depth, t_heads, "final_layer_norm"),
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
    eps = float(vision_hf.get("layer_norm_eps", 1e-5))
    patch = patch_weight.shape[-1]
    model_config = {
        "image": {
            "width": v_width, "depth": v_depth, "heads": v_heads, "patch_size": patch, "conv_stem_depth": 0,
            "pool": "cls", "activation": act, "layer_norm_eps": eps,
        },
        "text": {
            "kind": "clip", "width": t_width, "depth": t_depth, "heads": t_heads, "max_len": text_positions.shape[0],
            "activation": act, "layer_norm_eps": float(text_hf.get("layer_norm_eps", eps)), "pool": "argmax",
        },
        "embed_dim": state["visual_projection.weight"].shape[0],
        "image_size": grid * patch,
        "vocab_size": state["text_model.embeddings.token_embedding.weight"].shape[0],
    }  # fmt: skip
    for tower in ("image", "text"):
        mlp = state[f"{'vision' if tower == 'image' else 'text'}_model.encoder.layers.0.mlp.fc1.weight"].shape[0]
        width = model_config[tower]["width"]
        if mlp % width:
            raise ConfigError(
                f"{path!r} has MLP width {mlp} for width {width}; our towers need a multiple of the width."
            )
        if mlp != 4 * width:
            raise ConfigError(
                f"{path!r} has MLP ratio {mlp / width:g}; our towers use 4 (config has no switch for it)."
            )
    return flatten(params), model_config


def _depth(state: dict, tower: str) -> int:
    prefix = f"{tower}.encoder.layers."
    return len({k[len(prefix) :].split(".")[0] for k in state if k.startswith(prefix)})
