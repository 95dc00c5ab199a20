"""SigLIP interop: a small random Hugging Face SiglipModel converted into our two-tower model gives
transformers' image and text embeddings and logits (scale and bias) within 1e-4; exported back, the
folder holds the same weights and transformers computes the same logits from it."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from safetensors.numpy import load_file

from interop.siglip_weights import convert_siglip, export_hf_siglip
from models.two_tower import TwoTower
from tests.interop_reference import nested, require_torch

VOCAB, PAD = 60, 1


def _tiny_hf_siglip(transformers, torch):
    """Each tower its own activation, epsilon, heads and MLP width (not a multiple of the width); image size 30
    with patch 8 (the last 6 pixel rows and columns are dropped, as by SigLIP's convolution)."""
    config = transformers.SiglipConfig(
        text_config=dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=72, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=12, hidden_act="gelu",
                         layer_norm_eps=1e-5, pad_token_id=PAD, eos_token_id=PAD, bos_token_id=None),
        vision_config=dict(hidden_size=32, intermediate_size=100, num_hidden_layers=2, num_attention_heads=2,
                           image_size=30, patch_size=8, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6),
    )  # fmt: skip
    model = transformers.SiglipModel(config).eval()
    with torch.no_grad():  # transformers initialises biases and norms to constants: make every term count
        for name, p in model.named_parameters():
            if name.endswith("bias") or "layer_norm" in name or "layernorm" in name:
                p.add_(0.3 * torch.randn_like(p))
        model.logit_scale.fill_(2.3)
        model.logit_bias.fill_(-3.1)
    return model


def _inputs(rng: np.random.Generator, length: int):
    images = rng.normal(size=(3, 30, 30, 3)).astype(np.float32)
    tokens = np.full((3, length), PAD, np.int64)  # SigLIP pads to max_len with its pad (= end) id
    for row, n in enumerate((3, 7, length)):
        tokens[row, :n] = rng.integers(2, VOCAB, n)
    return images, tokens


def _ours(params: dict, model_config: dict, images: np.ndarray, tokens: np.ndarray) -> dict:
    model = TwoTower(
        image=ml_collections.ConfigDict(model_config["image"]),
        text=ml_collections.ConfigDict(model_config["text"]),
        embed_dim=model_config["embed_dim"],
        vocab_size=model_config["vocab_size"],
        logit_scale_init=0.0,
        image_projection=model_config["image_projection"],
        text_projection=model_config["text_projection"],
    )
    out = jax.jit(model.apply)({"params": nested(params)}, jnp.asarray(images), jnp.asarray(tokens, jnp.int32))
    out = {k: np.asarray(v) for k, v in out.items()}
    out["logits"] = out["text_embedding"] @ out["image_embedding"].T * np.exp(out["logit_scale"]) + out["logit_bias"]
    return out


def _reference(torch, model, images: np.ndarray, tokens: np.ndarray) -> dict:
    with torch.no_grad():
        out = model(input_ids=torch.tensor(tokens), pixel_values=torch.tensor(images.transpose(0, 3, 1, 2)))
    return {"image_features": out.image_embeds, "text_features": out.text_embeds, "logits": out.logits_per_text}


def test_siglip_converts_to_the_same_embeddings_and_logits(tmp_path):
    torch, transformers = require_torch()
    hf_model = _tiny_hf_siglip(transformers, torch)
    hf_model.save_pretrained(tmp_path / "hf")
    params, model_config = convert_siglip(str(tmp_path / "hf"))
    assert model_config["image"]["pool"] == "map" and model_config["text"]["pool"] == "final"
    assert (model_config["image"]["mlp_dim"], model_config["text"]["mlp_dim"]) == (100, 72)
    assert (model_config["image"]["activation"], model_config["text"]["activation"]) == ("gelu_tanh", "gelu")
    images, tokens = _inputs(np.random.default_rng(0), 12)
    ours = _ours(params, model_config, images, tokens)
    reference = _reference(torch, hf_model, images, tokens)
    # transformers' SiglipModel normalises the embeddings it returns; ours are the features before that.
    normalised = {k: ours[k] / np.linalg.norm(ours[k], axis=-1, keepdims=True) for k in reference if k != "logits"}
    for key in ("image_features", "text_features"):
        assert np.abs(normalised[key] - reference[key].numpy()).max() < 1e-4, key
    assert np.abs(ours["logits"] - reference["logits"].numpy()).max() < 1e-4
    np.testing.assert_allclose([ours["logit_scale"], ours["logit_bias"]], [2.3, -3.1], rtol=1e-6)

    config = ml_collections.ConfigDict({"model": {**model_config, "logit_scale_init": 0.0}, "data": {"image_size": 30}})
    folder = export_hf_siglip(nested(params), config, str(tmp_path / "back"), vocab_size=VOCAB)
    exported = load_file(f"{folder}/model.safetensors")
    original = {k: v.numpy() for k, v in hf_model.state_dict().items() if not k.endswith("position_ids")}
    assert exported.keys() == original.keys()
    for name, value in original.items():
        np.testing.assert_array_equal(exported[name], value, err_msg=name)
    back = transformers.SiglipModel.from_pretrained(folder).eval()
    assert np.abs(_reference(torch, back, images, tokens)["logits"].numpy() - reference["logits"].numpy()).max() < 1e-5
