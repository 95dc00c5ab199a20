"""Any supported checkpoint -> our params and the config keys it needs, chosen by the checkpoint's contents:
BERT-family, SigLIP and Llama folders by their config.json, big_vision's .npz by name, CLIP otherwise.

Imports no jax or PyTorch (configs call it while they are built: configs/common.py use_pretrained).
"""

from __future__ import annotations

import os

import numpy as np

from input_pipeline.llama_tokenizer import vocabulary_order
from interop.bert_weights import convert_bert, read_bert_config
from interop.big_vision_weights import convert_big_vision_siglip
from interop.clip_weights import convert_clip, read_hf_clip_config
from interop.llama_weights import convert_llama, is_llama
from interop.named_models import resolve
from interop.siglip_weights import convert_siglip, is_siglip


def is_bert(path: str) -> bool:
    return read_bert_config(path).get("model_type") in ("bert", "distilbert") or (
        not read_hf_clip_config(path) and os.path.isfile(os.path.join(path, "1_Pooling", "config.json"))
    )


def convert_checkpoint(path_or_name: str, text_max_len: int) -> tuple[dict[str, np.ndarray], dict]:
    """-> ({param path: array}, {config key: value the checkpoint needs}). `text_max_len`: config.model.text.max_len
    (a BERT checkpoint's position table is cut to it)."""
    path = resolve(path_or_name)
    if is_llama(path):
        return convert_llama_for_training(path)
    if is_bert(path):
        params, text = convert_bert(path, max_len=text_max_len)
        return params, {f"model.text.{k}": v for k, v in text.items()}
    if path.endswith(".npz"):
        params, model = convert_big_vision_siglip(path)
    else:
        params, model = (convert_siglip if is_siglip(path) else convert_clip)(path)
    needs = {f"model.{tower}.{k}": v for tower in ("image", "text") for k, v in model[tower].items()}
    needs.update({f"model.{k}": model[k] for k in ("embed_dim", "image_projection", "text_projection")})
    needs["data.image_size"] = model["image_size"]
    return params, needs


def convert_llama_for_training(path: str) -> tuple[dict[str, np.ndarray], dict]:
    """A Llama checkpoint as convert_checkpoint returns it: the decoder's params with the vocabulary in the order of
    the project's ids (input_pipeline/llama_tokenizer.py), and the config.model.decoder keys it needs."""
    params, decoder = convert_llama(path)
    order = vocabulary_order(params["token_embedding/embedding"].shape[0])
    params["token_embedding/embedding"] = params["token_embedding/embedding"][order]
    if "lm_head/kernel" in params:
        params["lm_head/kernel"] = params["lm_head/kernel"][:, order]
    decoder["vocab_size"] = len(order)
    return params, {f"model.decoder.{k}": v for k, v in decoder.items()}


def decoder_prefixes(needs: dict) -> tuple[str, ...]:
    """The top-level parameter names of the decoder that a Llama checkpoint's `needs` describe."""
    blocks = [f"block{i}" for i in range(needs["model.decoder.depth"])]
    untied = () if needs["model.decoder.tie_embeddings"] else ("lm_head",)
    return ("token_embedding", *blocks, "ln_final", *untied)


def needs_for(needs: dict, prefixes: list[str]) -> dict:
    """The entries of `needs` that matter when only the params under `prefixes` are copied."""
    roots = {p.split("/")[0] for p in prefixes}
    if "token_embedding" in roots:  # a decoder's: every size and switch shapes or computes its blocks
        return {k: v for k, v in needs.items() if k.startswith("model.decoder.")}
    towers = {t for t, name in (("image", "image_tower"), ("text", "text_tower")) if name in roots}
    relevant = {k: v for k, v in needs.items() if any(k.startswith(f"model.{t}.") for t in towers)}
    if "image" in towers and "data.image_size" in needs:
        relevant["data.image_size"] = needs["data.image_size"]
    if any("projection" in p for p in prefixes) and "model.embed_dim" in needs:
        relevant["model.embed_dim"] = needs["model.embed_dim"]
    relevant.update({f"model.{p}": needs[f"model.{p}"] for p in prefixes if f"model.{p}" in needs})
    return relevant
