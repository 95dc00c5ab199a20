"""Round trips through Hugging Face folders over random small configurations (issue 24): CLIPModel
(20 configurations each way) and SiglipModel (8 each way).

ours -> CLIPModel folder -> ours gives back the same config and the same params, up to the two folds
the format forces (our patch-convolution bias moves into the position embeddings; CLIPModel has no logit
bias). CLIPModel folder -> ours -> CLIPModel folder gives back the same config entries and the same
weights, up to CLIP's class-token position embedding, which moves into the class embedding; transformers
then computes the same features from both folders. Every switch varies: per-tower activation, LayerNorm
epsilon, heads, depth and MLP width (multiples of the width or not), patch size and image sizes that the
patch does not divide, text pooling (argmax, end-of-text id, last), vocabulary, lengths, embed_dim.
SigLIP's folders hold exactly our parameters (no folds): both trips give back the same weights.
"""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from safetensors.numpy import load_file

from interop.clip_weights import convert_clip
from interop.export_hf import export_hf_clip
from interop.siglip_weights import convert_siglip, export_hf_siglip
from tests.interop_reference import nested, require_torch, two_tower

ACTIVATIONS = ("gelu", "quick_gelu", "gelu_tanh")
HF_ACTIVATIONS = ("gelu", "quick_gelu", "gelu_pytorch_tanh")
EPSILONS = (1e-5, 1e-6, 1e-3)
SEEDS = range(20)
SIGLIP_SEEDS = range(8)


def _tower(rng: np.random.Generator) -> dict:
    width = int(rng.choice([8, 12, 16, 24]))
    mlp_dim = int(rng.choice([0, 4 * width + 0, rng.integers(1, 5 * width)]))  # 4 x width comes back as 0
    return {
        "width": width,
        "depth": int(rng.integers(1, 3)),
        "heads": int(rng.choice([h for h in (1, 2, 3, 4, 6) if width % h == 0])),
        "mlp_dim": 0 if mlp_dim == 4 * width else mlp_dim,
        "activation": str(rng.choice(ACTIVATIONS)),
        "layer_norm_eps": float(rng.choice(EPSILONS)),
    }


def _random_model_config(rng: np.random.Generator) -> dict:
    patch, grid = int(rng.integers(2, 6)), int(rng.integers(1, 4))
    vocab = int(rng.integers(10, 40))
    pool = str(rng.choice(["last", "argmax", "eos"]))
    return {
        "image": {**_tower(rng), "patch_size": patch, "conv_stem_depth": 0, "pool": "cls", "ln_pre": True},
        "text": {**_tower(rng), "kind": "clip", "max_len": int(rng.integers(3, 9)), "pool": pool, "causal": True,
                 "eos_token_id": int(rng.integers(3, vocab)) if pool == "eos" else 0},
        "embed_dim": int(rng.integers(4, 17)),
        "vocab_size": vocab,
        "image_size": grid * patch + int(rng.integers(0, patch)),  # the remainder is dropped, as by CLIP
        "image_projection": "linear",
        "text_projection": "linear",
    }  # fmt: skip


def _random_params(model_config: dict, rng: np.random.Generator) -> dict:
    """Random values (biases, norms and the class token too) of the model's params, as {path: array}."""
    model = two_tower(model_config)
    size, length = model_config["image_size"], model_config["text"]["max_len"]
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)), jnp.zeros((1, length), jnp.int32))
    )["params"]
    leaves = jax.tree_util.tree_flatten_with_path(shapes)[0]
    return {"/".join(k.key for k in path): rng.normal(size=v.shape).astype(np.float32) for path, v in leaves}


@pytest.mark.parametrize("seed", SEEDS)
def test_ours_to_clip_folder_to_ours(tmp_path, seed):
    rng = np.random.default_rng(seed)
    model_config = _random_model_config(rng)
    params = _random_params(model_config, rng)
    config = ml_collections.ConfigDict(
        {"model": {**model_config, "logit_scale_init": 1.0}, "data": {"image_size": model_config["image_size"]}}
    )
    eos = int(rng.integers(3, model_config["vocab_size"]))  # the tokenizer's end-of-text id (pool "last" only)
    folder = export_hf_clip(nested(params), config, str(tmp_path), vocab_size=model_config["vocab_size"],
                            eos_token_id=eos)  # fmt: skip
    converted, back = convert_clip(folder)
    assert back == model_config
    expected = dict(params)
    expected["image_tower/pos_embedding"] = params["image_tower/pos_embedding"] + params["image_tower/patchify/bias"]
    expected["image_tower/patchify/bias"] = np.zeros_like(params["image_tower/patchify/bias"])
    expected["logit_bias"] = np.zeros((), np.float32)
    assert converted.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(converted[name], value, err_msg=name)


def _random_hf_clip(transformers, rng: np.random.Generator):
    def tower() -> dict:
        width = int(rng.choice([8, 12, 16, 24]))
        return dict(
            hidden_size=width, num_hidden_layers=int(rng.integers(1, 3)),
            num_attention_heads=int(rng.choice([h for h in (1, 2, 3, 4, 6) if width % h == 0])),
            intermediate_size=int(rng.choice([4 * width, rng.integers(1, 5 * width)])),
            hidden_act=str(rng.choice(HF_ACTIVATIONS)), layer_norm_eps=float(rng.choice(EPSILONS)),
        )  # fmt: skip

    patch, vocab = int(rng.integers(2, 6)), int(rng.integers(10, 40))
    eos = int(rng.choice([2, rng.integers(3, vocab)]))  # 2: transformers' legacy argmax pooling
    config = transformers.CLIPConfig(
        text_config=dict(**tower(), vocab_size=vocab, max_position_embeddings=int(rng.integers(3, 9)),
                         eos_token_id=eos, bos_token_id=eos, pad_token_id=0),
        vision_config=dict(**tower(), patch_size=patch,
                           image_size=int(rng.integers(1, 4)) * patch + int(rng.integers(0, patch))),
        projection_dim=int(rng.integers(4, 17)),
    )  # fmt: skip
    return transformers.CLIPModel(config).eval()


def _features(torch, model, images: np.ndarray, tokens: np.ndarray) -> list[np.ndarray]:
    with torch.no_grad():
        image = model.get_image_features(pixel_values=torch.tensor(images))
        text = model.get_text_features(input_ids=torch.tensor(tokens))
    return [(x if isinstance(x, torch.Tensor) else x.pooler_output).numpy() for x in (image, text)]


@pytest.mark.parametrize("seed", SEEDS)
def test_clip_folder_to_ours_to_clip_folder(tmp_path, seed):
    torch, transformers = require_torch()
    rng = np.random.default_rng(100 + seed)
    torch.manual_seed(seed)
    original = _random_hf_clip(transformers, rng)
    original.save_pretrained(tmp_path / "hf")
    params, model_config = convert_clip(str(tmp_path / "hf"))
    config = ml_collections.ConfigDict(
        {"model": {**model_config, "logit_scale_init": 1.0}, "data": {"image_size": model_config["image_size"]}}
    )
    text_hf = original.config.text_config
    folder = export_hf_clip(nested(params), config, str(tmp_path / "back"), vocab_size=model_config["vocab_size"],
                            eos_token_id=text_hf.eos_token_id)  # fmt: skip
    with open(f"{folder}/config.json", encoding="utf-8") as f:
        exported = json.load(f)
    for ours, hf in ((exported["vision_config"], original.config.vision_config), (exported["text_config"], text_hf)):
        for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "hidden_act",
                    "layer_norm_eps"):  # fmt: skip
            assert ours[key] == getattr(hf, key), key
    assert exported["text_config"]["eos_token_id"] == text_hf.eos_token_id
    assert exported["vision_config"]["image_size"] == original.config.vision_config.image_size
    expected = {k: v.numpy().copy() for k, v in original.state_dict().items() if not k.endswith("position_ids")}
    # CLIP's class token carries a position embedding of its own; ours folds it into the class embedding.
    class_position = expected["vision_model.embeddings.position_embedding.weight"][0].copy()
    expected["vision_model.embeddings.class_embedding"] = (
        expected["vision_model.embeddings.class_embedding"] + class_position
    )
    expected["vision_model.embeddings.position_embedding.weight"][0] = 0.0
    state = load_file(f"{folder}/model.safetensors")
    assert state.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(state[name], value, err_msg=name)
    size, length = original.config.vision_config.image_size, text_hf.max_position_embeddings
    images = rng.normal(size=(2, 3, size, size)).astype(np.float32)
    tokens = rng.integers(0, model_config["vocab_size"], size=(2, length))
    tokens[:, -1] = text_hf.eos_token_id
    back = transformers.CLIPModel.from_pretrained(folder).eval()
    for a, b in zip(_features(torch, back, images, tokens), _features(torch, original, images, tokens), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def _random_siglip_config(rng: np.random.Generator) -> dict:
    model_config = _random_model_config(rng)
    model_config["image"].update(pool="map", ln_pre=False)
    model_config["text"].update(pool="final", causal=False, eos_token_id=0)
    model_config.update(embed_dim=model_config["image"]["width"], image_projection="none", text_projection="affine")
    return model_config


@pytest.mark.parametrize("seed", SIGLIP_SEEDS)
def test_ours_to_siglip_folder_to_ours(tmp_path, seed):
    rng = np.random.default_rng(200 + seed)
    model_config = _random_siglip_config(rng)
    params = _random_params(model_config, rng)
    config = ml_collections.ConfigDict(
        {"model": {**model_config, "logit_scale_init": 1.0}, "data": {"image_size": model_config["image_size"]}}
    )
    folder = export_hf_siglip(nested(params), config, str(tmp_path), vocab_size=model_config["vocab_size"])
    converted, back = convert_siglip(folder)
    assert back == model_config
    assert converted.keys() == params.keys()
    for name, value in params.items():
        np.testing.assert_array_equal(converted[name], value, err_msg=name)


@pytest.mark.parametrize("seed", SIGLIP_SEEDS)
def test_siglip_folder_to_ours_to_siglip_folder(tmp_path, seed):
    torch, transformers = require_torch()
    rng = np.random.default_rng(300 + seed)
    torch.manual_seed(seed)
    tower = lambda width: dict(  # noqa: E731
        hidden_size=width, num_hidden_layers=int(rng.integers(1, 3)),
        num_attention_heads=int(rng.choice([h for h in (1, 2, 4) if width % h == 0])),
        intermediate_size=int(rng.choice([4 * width, rng.integers(1, 5 * width)])),
        hidden_act=str(rng.choice(HF_ACTIVATIONS)), layer_norm_eps=float(rng.choice(EPSILONS)),
    )  # fmt: skip
    width, patch, vocab = int(rng.choice([8, 12, 16])), int(rng.integers(2, 6)), int(rng.integers(10, 40))
    original = transformers.SiglipModel(
        transformers.SiglipConfig(
            text_config=dict(
                **tower(int(rng.choice([8, 12, 16]))),
                vocab_size=vocab,
                projection_size=width,
                max_position_embeddings=int(rng.integers(3, 9)),
                pad_token_id=1,
                eos_token_id=1,
                bos_token_id=None,
            ),
            vision_config=dict(
                **tower(width),
                patch_size=patch,
                image_size=int(rng.integers(1, 4)) * patch + int(rng.integers(0, patch)),
            ),
        )  # fmt: skip
    ).eval()
    with torch.no_grad():
        original.logit_scale.fill_(float(rng.normal()))
        original.logit_bias.fill_(float(rng.normal()))
    original.save_pretrained(tmp_path / "hf")
    params, model_config = convert_siglip(str(tmp_path / "hf"))
    config = ml_collections.ConfigDict(
        {"model": {**model_config, "logit_scale_init": 1.0}, "data": {"image_size": model_config["image_size"]}}
    )
    folder = export_hf_siglip(nested(params), config, str(tmp_path / "back"), vocab_size=vocab)
    expected = {k: v.numpy() for k, v in original.state_dict().items() if not k.endswith("position_ids")}
    state = load_file(f"{folder}/model.safetensors")
    assert state.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(state[name], value, err_msg=name)
    back = transformers.SiglipModel.from_pretrained(folder).eval()
    size, length = original.config.vision_config.image_size, original.config.text_config.max_position_embeddings
    images = torch.tensor(rng.normal(size=(2, 3, size, size)).astype(np.float32))
    tokens = torch.tensor(rng.integers(0, vocab, size=(2, length)))
    with torch.no_grad():
        logits = [m(input_ids=tokens, pixel_values=images).logits_per_text.numpy() for m in (back, original)]
    np.testing.assert_allclose(logits[0], logits[1], rtol=0, atol=1e-5)
    for key in ("hidden_act", "layer_norm_eps", "intermediate_size", "num_attention_heads", "image_size"):
        assert getattr(back.config.vision_config, key) == getattr(original.config.vision_config, key), key
