"""Our two-tower params -> a Hugging Face `CLIPModel` folder (model.safetensors + config.json) that
`transformers.CLIPModel.from_pretrained(folder)` loads with the same image and text features.

    export_hf_clip(params, config, "runs/clip/hf", vocab_size=tokenizer.vocab_size, eos_token_id=3)

Needs only NumPy and `safetensors`. The image tower must be a plain ViT with class-token pooling
(config.model.image.conv_stem_depth = 0, pool = "cls", ln_pre: the tiny CPU preset's conv stem and
mean pooling have no CLIPModel equivalent), the text tower the causal `clip` kind, both projections
`linear`. Exact, not approximate: the patch convolution's bias is a constant added to every patch, so
it moves into CLIP's (bias-free) position embeddings; CLIP adds a position embedding to its class
token, which is zero here. Text pooling: transformers pools at the first `eos_token_id`, or at the
highest id when that is 2. So pool = "eos" exports its id, "argmax" exports 2, and "last" exports the
`eos_token_id` passed (the id our tokenizer ends captions with; SentencePiece: 3) and records
"pool": "last" in the text config, which clip_weights.py reads back. The logit bias (SigLIP) has no
place in CLIPModel and is not exported. Images must be normalised as our input pipeline does
(input_pipeline/transforms.py), channels first.
"""

from __future__ import annotations

import json
import os

import numpy as np

from configs.errors import ConfigError
from interop import hf_encoder


def check_exportable(config) -> None:
    m = config.model
    problems = []
    if m.image.conv_stem_depth:
        problems.append(f"config.model.image.conv_stem_depth is {m.image.conv_stem_depth}, CLIPModel needs 0")
    if m.image.pool != "cls":
        problems.append(f"config.model.image.pool is {m.image.pool!r}, CLIPModel needs 'cls'")
    if not m.image.get("ln_pre", True):
        problems.append("config.model.image.ln_pre is False, CLIPModel needs True")
    if m.text.get("kind", "clip") != "clip":
        problems.append(f"config.model.text.kind is {m.text.kind!r}, CLIPModel needs 'clip'")
    if not m.text.get("causal", True):
        problems.append("config.model.text.causal is False, CLIPModel needs True")
    if m.text.get("pool") == "final":
        problems.append("config.model.text.pool is 'final', CLIPModel pools at an end-of-text id")
    for tower in ("image", "text"):
        if m.get(f"{tower}_projection", "linear") != "linear":
            problems.append(
                f"config.model.{tower}_projection is {m[f'{tower}_projection']!r}, CLIPModel needs 'linear'"
            )
    if problems:
        raise ConfigError(
            f"This model cannot be a Hugging Face CLIPModel ({'; '.join(problems)}); train one with those settings."
        )


def hf_clip_state_dict(params, config) -> dict[str, np.ndarray]:
    """{CLIPModel parameter name: float32 array} for our params (a nested dict of arrays)."""
    check_exportable(config)
    p = {k: v for k, v in params.items()}
    image, text = p["image_tower"], p["text_tower"]
    patchify = image["patchify"]
    positions = np.asarray(image["pos_embedding"])[0] + np.asarray(patchify["bias"])
    state = {
        "vision_model.embeddings.class_embedding": np.asarray(image["cls"]).reshape(-1),
        "vision_model.embeddings.patch_embedding.weight": np.asarray(patchify["kernel"]).transpose(3, 2, 0, 1),
        "vision_model.embeddings.position_embedding.weight": np.concatenate(
            [np.zeros((1, positions.shape[1]), np.float32), positions]
        ),
        "vision_model.pre_layrnorm.weight": image["ln_pre"]["scale"],
        "vision_model.pre_layrnorm.bias": image["ln_pre"]["bias"],
        "vision_model.post_layernorm.weight": image["encoder"]["ln_final"]["scale"],
        "vision_model.post_layernorm.bias": image["encoder"]["ln_final"]["bias"],
        "text_model.embeddings.token_embedding.weight": text["token_embedding"]["embedding"],
        "text_model.embeddings.position_embedding.weight": np.asarray(text["pos_embedding"])[0],
        "text_model.final_layer_norm.weight": text["encoder"]["ln_final"]["scale"],
        "text_model.final_layer_norm.bias": text["encoder"]["ln_final"]["bias"],
        "visual_projection.weight": np.asarray(p["image_projection"]["kernel"]).T,
        "text_projection.weight": np.asarray(p["text_projection"]["kernel"]).T,
        "logit_scale": np.asarray(p["logit_scale"]),
    }
    state.update(hf_encoder.encoder_to_hf(image["encoder"], "vision_model", config.model.image.depth))
    state.update(hf_encoder.encoder_to_hf(text["encoder"], "text_model", config.model.text.depth))
    return hf_encoder.as_float32(state)


def hf_tower_config(tower) -> dict:
    """The entries of an HF CLIP/SigLIP tower config that our tower config (config.model.image / text) sets."""
    return {
        "hidden_size": tower.width, "intermediate_size": tower.get("mlp_dim", 0) or 4 * tower.width,
        "num_hidden_layers": tower.depth, "num_attention_heads": tower.heads,
        "hidden_act": hf_encoder.TO_HF_ACTIVATION[tower.activation], "layer_norm_eps": tower.layer_norm_eps,
    }  # fmt: skip


def hf_clip_config(config, vocab_size: int, eos_token_id: int | None = None) -> dict:
    """The config.json of the exported CLIPModel (text pooling: the module docstring)."""
    m = config.model
    pool = m.text.get("pool", "last")
    eos = {"argmax": 2, "eos": m.text.get("eos_token_id", 0), "last": eos_token_id}[pool]
    if pool == "last" and eos_token_id is None:
        raise ConfigError("A text tower with pool='last' needs the id captions end with; pass eos_token_id.")
    if eos == 2 and pool != "argmax":
        raise ConfigError(f"transformers pools at the largest id when eos_token_id is 2, not as pool={pool!r} does; "
                          "export with pool='argmax' or another end-of-text id.")  # fmt: skip
    text = {
        "vocab_size": vocab_size, **hf_tower_config(m.text), "max_position_embeddings": m.text.max_len,
        "projection_dim": m.embed_dim, "pad_token_id": 0, "bos_token_id": eos, "eos_token_id": eos,
        **({"pool": "last"} if pool == "last" else {}),
    }  # fmt: skip
    vision = {
        **hf_tower_config(m.image), "image_size": config.data.image_size, "patch_size": m.image.patch_size,
        "num_channels": 3, "projection_dim": m.embed_dim,
    }  # fmt: skip
    return {
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": m.embed_dim,
        "logit_scale_init_value": float(m.logit_scale_init),
        "text_config": text,
        "vision_config": vision,
    }


def write_hf_folder(state: dict[str, np.ndarray], config_json: dict, folder: str) -> str:
    """folder/model.safetensors and folder/config.json; returns `folder`."""
    from safetensors.numpy import save_file

    os.makedirs(folder, exist_ok=True)
    save_file(state, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config_json, f, indent=2)
    return folder


def export_hf_clip(params, config, folder: str, *, vocab_size: int, eos_token_id: int | None = None) -> str:
    """Writes folder/model.safetensors and folder/config.json; returns `folder`. `eos_token_id`: pool 'last' only."""
    config_json = hf_clip_config(config, vocab_size, eos_token_id)
    return write_hf_folder(hf_clip_state_dict(params, config), config_json, folder)
