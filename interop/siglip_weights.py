"""Hugging Face `SiglipModel` folders <-> our two-tower params, both ways and exactly.

    params, model_config = convert_siglip("siglip-base-patch16-224")    # folder: model.safetensors + config.json
    export_hf_siglip(params, config, "runs/siglip/hf", vocab_size=32000)

SigLIP in our model: the image tower has no class token and no LayerNorm before the encoder
(image.pool = "map", ln_pre = False) and pools with a multihead attention-pooling head whose output
is the embedding (image_projection = "none"); the text tower attends both ways, padding included
(text.causal = False), pools at the last position (text.pool = "final": SigLIP pads captions to
max_len) and projects with a biased Dense (text_projection = "affine", HF's `text_model.head`); the
learnable logit scale and bias are ours. Text tokens as transformers' SiglipTokenizer makes them (its
pad id is 1, not 0, and captions must be padded to max_len as SigLIP was trained).
"""

from __future__ import annotations

import numpy as np

from configs.errors import ConfigError
from interop import attention, hf_encoder, mismatch
from interop.bert_weights import flatten
from interop.clip_weights import read_hf_clip_config
from interop.export_hf import hf_tower_config, write_hf_folder
from interop.safe_load import load_state_dict

_HEAD = "vision_model.head."


def is_siglip(path: str, state: dict | None = None) -> bool:
    """An HF SiglipModel folder (by its config.json, or its MAP head's probe when there is none)."""
    if read_hf_clip_config(path).get("model_type") == "siglip":
        return True
    return state is not None and f"{_HEAD}probe" in state


def convert_siglip(path: str) -> tuple[dict[str, np.ndarray], dict]:
    """SiglipModel checkpoint -> ({our param path: array}, {"image", "text", "embed_dim", "image_size", ...})."""
    state = load_state_dict(path)
    hf = read_hf_clip_config(path)
    vision_hf, text_hf = hf.get("vision_config", {}), hf.get("text_config", {})
    if not vision_hf.get("vision_use_head", True) or f"{_HEAD}probe" not in state:
        raise ConfigError(f"{path!r} has no attention-pooling head (vision_use_head); pass a SiglipModel with one.")
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        if name not in state:
            mismatch.raise_mismatch(repr(path), [f"{name} is missing there"], "pass a complete SiglipModel checkpoint.")
        used.add(name)
        return state[name]

    v_width = take("vision_model.embeddings.patch_embedding.weight").shape[0]
    t_width = take("text_model.embeddings.token_embedding.weight").shape[1]
    towers = {
        tower: hf_encoder.tower_settings(state, hf_tower, model, width, repr(path), "gelu_pytorch_tanh", 1e-6)
        for tower, model, hf_tower, width in (
            ("image", "vision_model", vision_hf, v_width),
            ("text", "text_model", text_hf, t_width),
        )
    }

    patch_weight = take("vision_model.embeddings.patch_embedding.weight")  # [W, 3, p, p]
    positions = take("vision_model.embeddings.position_embedding.weight")  # [(S/p)^2, W]
    patch = patch_weight.shape[-1]
    grid = int(round(np.sqrt(positions.shape[0])))
    image_size = int(vision_hf.get("image_size", grid * patch))
    if (image_size // patch) ** 2 != positions.shape[0]:
        raise ConfigError(f"{path!r} has {positions.shape[0]} patch positions for image_size {image_size} and patch "
                          f"{patch}; fix its config.json.")  # fmt: skip
    heads = towers["image"]["heads"]
    q, k, v = np.split(take(f"{_HEAD}attention.in_proj_weight"), 3)
    q_bias, k_bias, v_bias = np.split(take(f"{_HEAD}attention.in_proj_bias"), 3)
    map_head = {
        "probe": take(f"{_HEAD}probe"),
        "attn": {
            "query": attention.qkv_from_linear(q, q_bias, heads),
            "key": attention.qkv_from_linear(k, k_bias, heads),
            "value": attention.qkv_from_linear(v, v_bias, heads),
            "out": attention.out_from_linear(
                take(f"{_HEAD}attention.out_proj.weight"), take(f"{_HEAD}attention.out_proj.bias"), heads
            ),
        },
        "ln": attention.layer_norm(take(f"{_HEAD}layernorm.weight"), take(f"{_HEAD}layernorm.bias")),
        "mlp": hf_encoder.mlp_from_hf(take, f"{_HEAD}mlp."),
    }
    image_tower = {
        "patchify": {
            "kernel": patch_weight.transpose(2, 3, 1, 0),
            "bias": take("vision_model.embeddings.patch_embedding.bias"),
        },
        "pos_embedding": positions[None],
        "encoder": hf_encoder.encoder_from_hf(take, "vision_model", towers["image"], "post_layernorm"),
        "map_head": map_head,
    }
    text_positions = take("text_model.embeddings.position_embedding.weight")
    text_tower = {
        "token_embedding": {"embedding": take("text_model.embeddings.token_embedding.weight")},
        "pos_embedding": text_positions[None],
        "encoder": hf_encoder.encoder_from_hf(take, "text_model", towers["text"], "final_layer_norm"),
    }
    text_head = attention.dense_from_linear(take("text_model.head.weight"), take("text_model.head.bias"))
    if text_head["kernel"].shape[1] != v_width:
        raise ConfigError(f"{path!r} projects text to {text_head['kernel'].shape[1]} dimensions but its images have "
                          f"{v_width}; pass a SiglipModel whose text projection_size is the vision width.")  # fmt: skip
    params = {
        "image_tower": image_tower,
        "text_tower": text_tower,
        "text_projection": text_head,
        "logit_scale": take("logit_scale").reshape(()),
        "logit_bias": take("logit_bias").reshape(()),
    }
    mismatch.unused_keys(state, used, repr(path), "a SiglipModel")
    model_config = {
        "image": {"width": v_width, "patch_size": patch, "conv_stem_depth": 0, "pool": "map", "ln_pre": False,
                  **towers["image"]},
        "text": {"kind": "clip", "width": t_width, "max_len": text_positions.shape[0], "pool": "final",
                 "eos_token_id": 0, "causal": False, **towers["text"]},
        "embed_dim": v_width,
        "image_size": image_size,
        "vocab_size": text_tower["token_embedding"]["embedding"].shape[0],
        "image_projection": "none",
        "text_projection": "affine",
    }  # fmt: skip
    return flatten(params), model_config


def check_exportable(config) -> None:
    m = config.model
    wanted = {
        "model.image.pool": (m.image.pool, "map"),
        "model.image.ln_pre": (m.image.get("ln_pre", True), False),
        "model.image.conv_stem_depth": (m.image.conv_stem_depth, 0),
        "model.text.kind": (m.text.get("kind", "clip"), "clip"),
        "model.text.causal": (m.text.get("causal", True), False),
        "model.text.pool": (m.text.pool, "final"),
        "model.image_projection": (m.get("image_projection", "linear"), "none"),
        "model.text_projection": (m.get("text_projection", "linear"), "affine"),
    }
    problems = [f"config.{k} is {have!r}, SiglipModel needs {need!r}" for k, (have, need) in wanted.items()]
    problems = [p for p, (have, need) in zip(problems, wanted.values(), strict=True) if have != need]
    if problems:
        raise ConfigError(
            f"This model cannot be a Hugging Face SiglipModel ({'; '.join(problems)}); train one with those settings."
        )


def hf_siglip_state_dict(params, config) -> dict[str, np.ndarray]:
    """{SiglipModel parameter name: float32 array} for our params (a nested dict of arrays)."""
    check_exportable(config)
    image, text, head = params["image_tower"], params["text_tower"], params["image_tower"]["map_head"]
    qkv = [attention.linear_from_qkv(head["attn"][part]) for part in ("query", "key", "value")]
    out_weight, out_bias = attention.linear_from_out(head["attn"]["out"])
    state = {
        "vision_model.embeddings.patch_embedding.weight": np.asarray(image["patchify"]["kernel"]).transpose(3, 2, 0, 1),
        "vision_model.embeddings.patch_embedding.bias": image["patchify"]["bias"],
        "vision_model.embeddings.position_embedding.weight": np.asarray(image["pos_embedding"])[0],
        "vision_model.post_layernorm.weight": image["encoder"]["ln_final"]["scale"],
        "vision_model.post_layernorm.bias": image["encoder"]["ln_final"]["bias"],
        f"{_HEAD}probe": head["probe"],
        f"{_HEAD}attention.in_proj_weight": np.concatenate([w for w, _ in qkv]),
        f"{_HEAD}attention.in_proj_bias": np.concatenate([b for _, b in qkv]),
        f"{_HEAD}attention.out_proj.weight": out_weight,
        f"{_HEAD}attention.out_proj.bias": out_bias,
        f"{_HEAD}layernorm.weight": head["ln"]["scale"],
        f"{_HEAD}layernorm.bias": head["ln"]["bias"],
        **hf_encoder.mlp_to_hf(head["mlp"], f"{_HEAD}mlp."),
        "text_model.embeddings.token_embedding.weight": text["token_embedding"]["embedding"],
        "text_model.embeddings.position_embedding.weight": np.asarray(text["pos_embedding"])[0],
        "text_model.final_layer_norm.weight": text["encoder"]["ln_final"]["scale"],
        "text_model.final_layer_norm.bias": text["encoder"]["ln_final"]["bias"],
        "text_model.head.weight": np.asarray(params["text_projection"]["kernel"]).T,
        "text_model.head.bias": params["text_projection"]["bias"],
        "logit_scale": np.asarray(params["logit_scale"]).reshape(1),
        "logit_bias": np.asarray(params["logit_bias"]).reshape(1),
    }
    state.update(hf_encoder.encoder_to_hf(image["encoder"], "vision_model", config.model.image.depth))
    state.update(hf_encoder.encoder_to_hf(text["encoder"], "text_model", config.model.text.depth))
    return hf_encoder.as_float32(state)


def hf_siglip_config(config, vocab_size: int) -> dict:
    """The config.json of the exported SiglipModel."""
    m = config.model
    text = {**hf_tower_config(m.text), "vocab_size": vocab_size, "max_position_embeddings": m.text.max_len,
            "projection_size": m.embed_dim, "pad_token_id": 1, "bos_token_id": None, "eos_token_id": 1}  # fmt: skip
    vision = {**hf_tower_config(m.image), "image_size": config.data.image_size, "patch_size": m.image.patch_size,
              "num_channels": 3, "vision_use_head": True}  # fmt: skip
    return {"architectures": ["SiglipModel"], "model_type": "siglip", "text_config": text, "vision_config": vision}


def export_hf_siglip(params, config, folder: str, *, vocab_size: int) -> str:
    """Writes folder/model.safetensors and folder/config.json of a SiglipModel; returns `folder`."""
    return write_hf_folder(hf_siglip_state_dict(params, config), hf_siglip_config(config, vocab_size), folder)
