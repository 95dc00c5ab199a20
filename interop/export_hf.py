"""Our two-tower params -> a Hugging Face `CLIPModel` folder (model.safetensors + config.json) that
`transformers.CLIPModel.from_pretrained(folder)` loads with the same image and text features.

    export_hf_clip(params, config, "runs/clip/hf", vocab_size=tokenizer.vocab_size, eos_token_id=3)

Needs only NumPy and `safetensors`. The image tower must be a plain ViT with class-token pooling
(config.model.image.conv_stem_depth = 0, pool = "cls": the tiny CPU preset's conv stem and mean pooling
have no CLIPModel equivalent) and the text tower the `clip` kind. Exact, not approximate: the patch
convolution's bias is a constant added to every patch, so it moves into CLIP's (bias-free) position
embeddings; CLIP adds a position embedding to its class token, which is zero here. Text pooling:
transformers pools at the first `eos_token_id`, so pass the id our tokenizer ends captions with
(SentencePiece: 3); with pool = "argmax" (CLIP BPE) pass the largest id. The logit bias (SigLIP) has
no place in CLIPModel and is not exported. Images must be normalised as our input pipeline does
(input_pipeline/transforms.py), channels first.
"""

from __future__ import annotations

import json
import os

import numpy as np

from configs.errors import ConfigError
from interop import attention

_HF_ACTIVATIONS = {"gelu_tanh": "gelu_pytorch_tanh", "gelu": "gelu", "quick_gelu": "quick_gelu"}


def _check_exportable(config) -> None:
    m = config.model
    problems = []
    if m.image.conv_stem_depth:
        problems.append(f"config.model.image.conv_stem_depth is {m.image.conv_stem_depth}, CLIPModel needs 0")
    if m.image.pool != "cls":
        problems.append(f"config.model.image.pool is {m.image.pool!r}, CLIPModel needs 'cls'")
    if m.text.get("kind", "clip") != "clip":
        problems.append(f"config.model.text.kind is {m.text.kind!r}, CLIPModel needs 'clip'")
    if problems:
        raise ConfigError(
            f"This model cannot be a Hugging Face CLIPModel ({'; '.join(problems)}); train one with those settings."
        )


def _encoder(params: dict, tower: str, depth: int) -> dict[str, np.ndarray]:
    out = {}
    for i in range(depth):
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
        for fc in ("fc1", "fc2"):
            out[f"{p}mlp.{fc}.weight"], out[f"{p}mlp.{fc}.bias"] = (
                block["mlp"][fc]["kernel"].T,
                block["mlp"][fc]["bias"],
            )
    return out


def hf_clip_state_dict(params, config) -> dict[str, np.ndarray]:
    """{CLIPModel parameter name: float32 array} for our params (a nested dict of arrays)."""
    _check_exportable(config)
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
    state.update(_encoder(image["encoder"], "vision_model", config.model.image.depth))
    state.update(_encoder(text["encoder"], "text_model", config.model.text.depth))
    # np.require, not np.ascontiguousarray: the latter turns the 0-d logit_scale into shape [1], which
    # transformers (whose CLIPModel.logit_scale is a scalar) rejects as a size mismatch.
    return {k: np.require(np.asarray(v, np.float32), requirements="C") for k, v in state.items()}


def hf_clip_config(config, vocab_size: int, eos_token_id: int) -> dict:
    """The config.json of the exported CLIPModel."""
    m = config.model
    text = {
        "vocab_size": vocab_size, "hidden_size": m.text.width, "intermediate_size": 4 * m.text.width,
        "num_hidden_layers": m.text.depth, "num_attention_heads": m.text.heads,
        "max_position_embeddings": m.text.max_len,
        "hidden_act": _HF_ACTIVATIONS[m.text.activation], "layer_norm_eps": m.text.layer_norm_eps,
        "projection_dim": m.embed_dim, "pad_token_id": 0, "bos_token_id": eos_token_id, "eos_token_id": eos_token_id,
    }  # fmt: skip
    vision = {
        "hidden_size": m.image.width, "intermediate_size": 4 * m.image.width, "num_hidden_layers": m.image.depth,
        "num_attention_heads": m.image.heads, "image_size": config.data.image_size, "patch_size": m.image.patch_size,
        "num_channels": 3, "hidden_act": _HF_ACTIVATIONS[m.image.activation], "layer_norm_eps": m.image.layer_norm_eps,
        "projection_dim": m.embed_dim,
    }  # fmt: skip
    return {
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": m.embed_dim,
        "logit_scale_init_value": float(m.logit_scale_init),
        "text_config": text,
        "vision_config": vision,
    }


def export_hf_clip(params, config, folder: str, *, vocab_size: int, eos_token_id: int) -> str:
    """Writes folder/model.safetensors and folder/config.json; returns `folder`."""
    from safetensors.numpy import save_file

    if config.model.text.pool == "last" and eos_token_id == 2:
        raise ConfigError("transformers pools at the largest id when eos_token_id is 2; export with pool='argmax'.")
    state = hf_clip_state_dict(params, config)
    os.makedirs(folder, exist_ok=True)
    save_file(state, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as f:
        json.dump(hf_clip_config(config, vocab_size, eos_token_id), f, indent=2)
    return folder
