"""big_vision SigLIP .npz checkpoints: converted into our two-tower model, they give the embeddings and
logits of an independent NumPy forward written from the format (tests/big_vision_reference.py) within
1e-4, scanned (blocks stacked over depth) or not, with or without an image head; exported on to a
Hugging Face SiglipModel folder, transformers computes the same logits (which also checks the NumPy
forward against a third implementation)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from interop.big_vision_weights import convert_big_vision_siglip
from interop.siglip_weights import export_hf_siglip
from tests import big_vision_reference as reference
from tests.interop_reference import nested, require_torch, two_tower


def _inputs(rng: np.random.Generator):
    images = rng.normal(size=(3, 12, 12, 3)).astype(np.float32)
    tokens = rng.integers(0, 30, size=(3, 6))
    return images, tokens


def _ours(params: dict, model_config: dict, images: np.ndarray, tokens: np.ndarray) -> dict:
    model = two_tower(model_config)
    out = jax.jit(model.apply)({"params": nested(params)}, jnp.asarray(images), jnp.asarray(tokens, jnp.int32))
    out = {k: np.asarray(v) for k, v in out.items()}
    out["logits"] = out["text_embedding"] @ out["image_embedding"].T * np.exp(out["logit_scale"]) + out["logit_bias"]
    return out


def _check_against_reference(weights: dict, params: dict, model_config: dict) -> np.ndarray:
    images, tokens = _inputs(np.random.default_rng(1))
    ours = _ours(params, model_config, images, tokens)
    assert np.abs(ours["image_features"] - reference.image_features(weights, images)).max() < 1e-4
    assert np.abs(ours["text_features"] - reference.text_features(weights, tokens)).max() < 1e-4
    expected = reference.logits(weights, images, tokens)
    assert np.abs(ours["logits"] - expected).max() < 1e-4
    return expected


def test_scanned_checkpoint_matches_the_numpy_forward_and_exports_to_transformers(tmp_path):
    weights = reference.random_checkpoint(np.random.default_rng(0), scanned=True)
    np.savez(tmp_path / "siglip.npz", **weights)
    params, model_config = convert_big_vision_siglip(str(tmp_path / "siglip.npz"))
    assert model_config["image"]["heads"] == 2 and model_config["text"]["heads"] == 3
    assert (model_config["image"]["mlp_dim"], model_config["text"]["mlp_dim"]) == (40, 0)  # 0: 4 x width
    assert (model_config["image_size"], model_config["embed_dim"], model_config["image_projection"]) == (12, 16, "none")
    expected = _check_against_reference(weights, params, model_config)

    torch, transformers = require_torch()
    config = ml_collections.ConfigDict({"model": {**model_config, "logit_scale_init": 0.0}, "data": {"image_size": 12}})
    folder = export_hf_siglip(nested(params), config, str(tmp_path / "hf"), vocab_size=30)
    hf_model = transformers.SiglipModel.from_pretrained(folder).eval()
    images, tokens = _inputs(np.random.default_rng(1))
    with torch.no_grad():
        out = hf_model(input_ids=torch.tensor(tokens), pixel_values=torch.tensor(images.transpose(0, 3, 1, 2)))
    assert np.abs(out.logits_per_text.numpy() - expected).max() < 1e-4


def test_unscanned_checkpoint_with_an_image_head(tmp_path):
    weights = reference.random_checkpoint(np.random.default_rng(2), scanned=False, image_head=True)
    np.savez(tmp_path / "siglip.npz", **{k.removeprefix("params/"): v for k, v in weights.items()})  # no prefix
    params, model_config = convert_big_vision_siglip(str(tmp_path / "siglip.npz"))
    assert model_config["image_projection"] == "affine" and model_config["image"]["depth"] == 2
    _check_against_reference(weights, params, model_config)
