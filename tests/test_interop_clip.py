"""CLIP interop: tiny random Hugging Face CLIPModel and open_clip models converted into our two-tower
params give PyTorch's image and text features; our params exported to a CLIPModel folder load in
transformers with the same features; mismatched checkpoints are named in one error."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs.errors import ConfigError
from interop.bert_weights import flatten
from interop.clip_weights import convert_clip
from interop.export_hf import export_hf_clip
from models.two_tower import TwoTower
from tests.interop_reference import import_open_clip, nested, require_torch, two_tower

VOCAB, EOS = 99, 98  # EOS is the largest id, as in CLIP's vocabulary


def _model(model_config: dict) -> TwoTower:
    return two_tower(model_config)


def _inputs(rng: np.random.Generator, image_size: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Images [3, S, S, 3] and token ids [3, length]: start, words, EOS at different places, then 0."""
    images = rng.normal(size=(3, image_size, image_size, 3)).astype(np.float32)
    tokens = np.zeros((3, length), np.int32)
    for row, n in enumerate((3, 7, length - 2)):
        tokens[row, 0] = 97
        tokens[row, 1 : n + 1] = rng.integers(1, 97, n)
        tokens[row, n + 1] = EOS
    return images, tokens


def _features(model_config: dict, params: dict, images: np.ndarray, tokens: np.ndarray):
    return _our_features(_model(model_config), nested(params), images, tokens)


def _our_features(model: TwoTower, params, images: np.ndarray, tokens: np.ndarray):
    """(image features, text features) of `model`; jitted, as op-by-op dispatch is far slower here."""

    @jax.jit
    def features(params, images, tokens):
        variables = {"params": params}
        image = model.apply(variables, images, method=model.encode_image)["image_features"]
        return image, model.apply(variables, tokens, method=model.encode_text)["text_features"]

    image, text = features(params, jnp.asarray(images), jnp.asarray(tokens))
    return np.asarray(image), np.asarray(text)


def _hf_features(torch, hf_model, images: np.ndarray, tokens: np.ndarray):
    with torch.no_grad():
        pixels = torch.tensor(images.transpose(0, 3, 1, 2))
        image = hf_model.get_image_features(pixel_values=pixels)
        text = hf_model.get_text_features(input_ids=torch.tensor(tokens, dtype=torch.long))
    as_array = lambda x: (x if isinstance(x, torch.Tensor) else x.pooler_output).numpy()  # noqa: E731
    return as_array(image), as_array(text)


def _tiny_hf_clip(transformers, activation: str = "quick_gelu", text: dict | None = None, vision: dict | None = None):
    """A random CLIPModel; `text` / `vision` override entries of the towers' configs."""
    config = transformers.CLIPConfig(
        text_config={**dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=128, num_hidden_layers=2,
                            num_attention_heads=4, max_position_embeddings=16, hidden_act=activation,
                            bos_token_id=97, eos_token_id=EOS, pad_token_id=1), **(text or {})},
        vision_config={**dict(hidden_size=48, intermediate_size=192, num_hidden_layers=2, num_attention_heads=3,
                              image_size=32, patch_size=8, hidden_act=activation), **(vision or {})},
        projection_dim=16,
    )  # fmt: skip
    return transformers.CLIPModel(config).eval()


def _assert_converts_exactly(tmp_path, hf_model, tokens=None):
    """Converts `hf_model` (saved to tmp_path) and checks our features against transformers'; returns the config."""
    torch, _ = require_torch()
    hf_model.save_pretrained(tmp_path / "hf")
    params, model_config = convert_clip(str(tmp_path / "hf"))
    images, default_tokens = _inputs(np.random.default_rng(0), hf_model.config.vision_config.image_size, 16)
    tokens = default_tokens if tokens is None else tokens
    ours = _features(model_config, params, images, tokens)
    for a, b in zip(ours, _hf_features(torch, hf_model, images, tokens), strict=True):
        assert np.abs(a - b).max() < 1e-4
    return model_config


def test_each_tower_keeps_its_own_activation_eps_heads_and_mlp_width(tmp_path):
    """Issue 24, failure 1: a gelu text tower next to a quick_gelu image tower converted as quick_gelu for both."""
    _, transformers = require_torch()
    hf_model = _tiny_hf_clip(
        transformers,
        text=dict(hidden_act="gelu", layer_norm_eps=1e-3, num_attention_heads=2),
        vision=dict(hidden_act="quick_gelu", layer_norm_eps=1e-5, num_attention_heads=3),
    )
    config = _assert_converts_exactly(tmp_path, hf_model)
    assert (config["text"]["activation"], config["image"]["activation"]) == ("gelu", "quick_gelu")
    assert (config["text"]["layer_norm_eps"], config["image"]["layer_norm_eps"]) == (1e-3, 1e-5)
    assert (config["text"]["heads"], config["image"]["heads"]) == (2, 3)


def test_text_pools_at_the_first_end_of_text_id_when_it_is_a_real_token(tmp_path):
    """Issue 24, failure 2: eos_token_id 5 (not the legacy 2, not the largest id) is where transformers pools:
    its first occurrence, and position 0 in a row without it."""
    _, transformers = require_torch()
    hf_model = _tiny_hf_clip(transformers, text=dict(eos_token_id=5, bos_token_id=4))
    tokens = np.array([[4, 60, 90, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                       [4, 98, 7, 5, 30, 5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
                       [4, 70, 80, 90, 97, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21]], np.int32)  # fmt: skip
    config = _assert_converts_exactly(tmp_path, hf_model, tokens)
    assert (config["text"]["pool"], config["text"]["eos_token_id"]) == ("eos", 5)


def test_mlp_width_need_not_be_a_multiple_of_the_width(tmp_path):
    """Issue 24, failure 4: SigLIP So400m's MLP is 4304 wide for width 1152; here 100 for 48 and 72 for 32."""
    _, transformers = require_torch()
    hf_model = _tiny_hf_clip(transformers, text=dict(intermediate_size=72), vision=dict(intermediate_size=100))
    config = _assert_converts_exactly(tmp_path, hf_model)
    assert (config["text"]["mlp_dim"], config["image"]["mlp_dim"]) == (72, 100)  # 0 would mean 4 x width


def test_hf_clip_model_converts_to_the_same_features(tmp_path):
    torch, transformers = require_torch()
    hf_model = _tiny_hf_clip(transformers)
    with torch.no_grad():  # CLIP's class and position embeddings matter to the mapping: make them large
        hf_model.vision_model.embeddings.class_embedding.add_(torch.randn(48))
        hf_model.vision_model.embeddings.position_embedding.weight.add_(torch.randn(17, 48))
    hf_model.save_pretrained(tmp_path / "hf")
    params, model_config = convert_clip(str(tmp_path / "hf"))
    assert model_config["image_size"] == 32 and model_config["image"]["heads"] == 3
    assert model_config["text"]["pool"] == "eos" and model_config["image"]["activation"] == "quick_gelu"
    images, tokens = _inputs(np.random.default_rng(0), 32, 16)
    ours = _features(model_config, params, images, tokens)
    reference = _hf_features(torch, hf_model, images, tokens)
    for a, b in zip(ours, reference, strict=True):
        assert np.abs(a - b).max() < 1e-4
    np.testing.assert_allclose(params["logit_scale"], hf_model.logit_scale.item(), rtol=1e-6)


def test_open_clip_state_dict_converts_to_the_same_features(tmp_path):
    torch, _ = require_torch()
    open_clip = import_open_clip()
    model = open_clip.model.CLIP(
        embed_dim=16,
        vision_cfg=open_clip.model.CLIPVisionCfg(layers=2, width=128, patch_size=8, image_size=32),
        text_cfg=open_clip.model.CLIPTextCfg(context_length=16, vocab_size=VOCAB, width=128, heads=2, layers=1),
        quick_gelu=True,
    ).eval()
    torch.save(model.state_dict(), tmp_path / "open_clip.bin")
    params, model_config = convert_clip(str(tmp_path / "open_clip.bin"))
    assert model_config["image"]["heads"] == 2 and model_config["text"]["depth"] == 1
    images, tokens = _inputs(np.random.default_rng(1), 32, 16)
    ours = _features(model_config, params, images, tokens)
    with torch.no_grad():
        reference = (
            model.encode_image(torch.tensor(images.transpose(0, 3, 1, 2))).numpy(),
            model.encode_text(torch.tensor(tokens, dtype=torch.long)).numpy(),
        )
    for a, b in zip(ours, reference, strict=True):
        assert np.abs(a - b).max() < 1e-4


def _our_exportable_model():
    model_config = {
        "image": dict(width=32, depth=2, heads=4, patch_size=8, conv_stem_depth=0, pool="cls", activation="gelu_tanh",
                      layer_norm_eps=1e-6),
        "text": dict(kind="clip", width=32, depth=2, heads=2, max_len=12, activation="gelu_tanh", layer_norm_eps=1e-6,
                     pool="last"),
        "embed_dim": 16,
        "vocab_size": 50,
    }  # fmt: skip
    model = _model(model_config)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, 12), jnp.int32))
    )["params"]
    rng = np.random.default_rng(0)  # random biases and norms too, so that no term is left untested

    def draw(path, leaf):  # NumPy draws: compiling the model's initialiser takes far longer here
        name = jax.tree_util.keystr(path)
        mean = 1.0 if "scale" in name else 0.0
        return jnp.asarray(mean + 0.2 * rng.normal(size=leaf.shape), jnp.float32)

    params = jax.tree_util.tree_map_with_path(draw, shapes)
    config = ml_collections.ConfigDict({"model": {**model_config, "logit_scale_init": 2.0}, "data": {"image_size": 32}})
    return model, params, config


def test_export_loads_in_transformers_with_the_same_features(tmp_path):
    torch, transformers = require_torch()
    model, params, config = _our_exportable_model()
    folder = export_hf_clip(jax.device_get(params), config, str(tmp_path / "export"), vocab_size=50, eos_token_id=3)
    hf_model = transformers.CLIPModel.from_pretrained(folder).eval()
    rng = np.random.default_rng(2)
    images = rng.normal(size=(2, 32, 32, 3)).astype(np.float32)
    tokens = np.array([[2, 7, 9, 3, 0, 0, 0, 0, 0, 0, 0, 0], [2, 5, 6, 8, 11, 13, 4, 3, 0, 0, 0, 0]], np.int32)
    ours = _our_features(model, params, images, tokens)
    for a, b in zip(ours, _hf_features(torch, hf_model, images, tokens), strict=True):
        assert np.abs(a - b).max() < 1e-4
    np.testing.assert_allclose(hf_model.logit_scale.item(), float(params["logit_scale"]), rtol=1e-6)


def test_export_then_import_is_the_identity(tmp_path):
    """Issue 24, failure 3: gelu_tanh came back as an unknown 'gelu_pytorch_tanh', pool 'last' as 'argmax'."""
    model, params, config = _our_exportable_model()
    folder = export_hf_clip(jax.device_get(params), config, str(tmp_path / "export"), vocab_size=50, eos_token_id=3)
    converted, model_config = convert_clip(folder)
    for tower in ("image", "text"):
        assert {k: model_config[tower][k] for k in config.model[tower]} == dict(config.model[tower])
    expected = flatten(params)  # CLIP's patch convolution has no bias: ours moves into the position embeddings
    expected["image_tower/pos_embedding"] = (
        expected["image_tower/pos_embedding"] + expected["image_tower/patchify/bias"]
    )
    expected["image_tower/patchify/bias"] = np.zeros_like(expected["image_tower/patchify/bias"])
    expected["logit_bias"] = np.float32(0.0)  # nor has CLIPModel a logit bias
    assert converted.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_allclose(converted[name], value, rtol=0, atol=1e-7, err_msg=name)


def test_tiny_cpu_preset_is_refused_by_export(tmp_path):
    _, params, config = _our_exportable_model()
    config.model.image.conv_stem_depth, config.model.image.pool = 3, "gap"
    with pytest.raises(ConfigError, match=r"conv_stem_depth is 3, CLIPModel needs 0; .*pool is 'gap'"):
        export_hf_clip(jax.device_get(params), config, str(tmp_path / "x"), vocab_size=50, eos_token_id=3)


def test_mismatched_config_names_every_parameter_and_switch(tmp_path):
    from configs import common
    from interop.pretrained import load_pretrained_params

    torch, transformers = require_torch()
    _tiny_hf_clip(transformers).save_pretrained(tmp_path / "hf")
    config = common.get_base_config(None)
    config.init_from.pretrained = str(tmp_path / "hf")
    config.init_from.param_prefixes = ("image_tower", "text_tower")

    def params_of(config):  # shapes only: the model the config describes
        model = _model({"image": config.model.image, "text": config.model.text, "embed_dim": 16, "vocab_size": VOCAB})
        return jax.eval_shape(
            lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, 24), jnp.int32))
        )["params"]

    with pytest.raises(ConfigError) as error:
        load_pretrained_params(config, params_of(config))
    message = str(error.value)
    assert "config.model.image.activation is 'gelu_tanh' but the checkpoint needs 'quick_gelu'" in message
    assert "more); set those config keys to the checkpoint's values." in message
    # With only the sizes wrong, the error lists parameters and shapes, and the size keys to set.
    config.model.image.update(activation="quick_gelu", layer_norm_eps=1e-5, conv_stem_depth=0, pool="cls")
    config.model.text.update(activation="quick_gelu", layer_norm_eps=1e-5, pool="eos", eos_token_id=EOS)
    with pytest.raises(ConfigError) as error:
        load_pretrained_params(config, params_of(config))
    message = str(error.value)
    assert message.count("\n") == 0 and "image_tower/cls is (1, 1, 48) there but (1, 1, 128) in the model" in message
    assert "image_tower/encoder/block0/attn/query/kernel is (48, 3, 16) there but (128, 4, 32)" in message
    assert "more); set the config's model sizes to the checkpoint's (config.model.image.width = 48, " in message
    assert "config.model.text.max_len = 16, config.data.image_size = 32)" in message


def test_clip_config_takes_every_setting_from_the_checkpoint(tmp_path):
    """configs/clip.py:pretrained=FOLDER sets what the checkpoint needs, so main.py's load copies every parameter."""
    from configs import clip
    from interop.pretrained import load_pretrained_params
    from models.two_tower import build_model
    from training.validation import validate_config

    _, transformers = require_torch()
    text = dict(hidden_act="gelu", eos_token_id=5, bos_token_id=4, intermediate_size=72)
    _tiny_hf_clip(transformers, text=text).save_pretrained(tmp_path)
    config = clip.get_config(f"pretrained={tmp_path}")
    validate_config(config)
    assert (config.model.text.pool, config.model.text.eos_token_id, config.model.text.mlp_dim) == ("eos", 5, 72)
    assert (config.model.image.activation, config.model.text.activation) == ("quick_gelu", "gelu")
    model = build_model(config, VOCAB)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), jnp.zeros((1, 16), jnp.int32))
    )["params"]
    params, copied = load_pretrained_params(config, shapes)
    assert len(copied) == len(jax.tree.leaves(params))


def test_a_trained_run_exports_as_a_clip_folder_with_its_tokenizer(tmp_path):
    """--mode=export's two-tower path (training/export.py): a run trained here, its latest checkpoint written as a
    CLIPModel folder whose features are the run's; the tiny preset's conv stem is refused in one sentence."""
    torch, transformers = require_torch()
    from configs import clip as clip_config
    from training.export import export_run
    from training.loop import train_and_evaluate
    from training.trained_runs import load_trained_run

    config = clip_config.get_config()
    config.model.image.update(conv_stem_depth=0, pool="cls", depth=1)
    config.model.text.depth = 1
    config.update(total_steps=2, eval_every_steps=2, checkpoint_every_steps=2, batch_size=16)
    config.data.train_size, config.eval.num_examples = 64, 32
    train_and_evaluate(config, str(tmp_path / "run"))
    folder, kind, step = export_run(config, str(tmp_path / "run"))
    assert (folder, kind, step) == (str(tmp_path / "run" / "hf"), "CLIPModel", 2)
    model, tokenizer, params, _ = load_trained_run(config, str(tmp_path / "run"))
    assert (tmp_path / "run" / "hf" / "tokenizer.model").read_bytes() == tokenizer.model_proto
    hf_model = transformers.CLIPModel.from_pretrained(folder).eval()
    size = config.data.image_size
    images = np.random.default_rng(3).normal(size=(2, size, size, 3)).astype(np.float32)
    tokens = tokenizer.encode(["a red square", "two blue circles"], config.model.text.max_len)
    for a, b in zip(_our_features(model, params, images, tokens), _hf_features(torch, hf_model, images, tokens),
                    strict=True):  # fmt: skip
        assert np.abs(a - b).max() < 1e-4
    config.model.image.update(conv_stem_depth=2, pool="gap")  # the tiny preset's: no CLIPModel equivalent
    with pytest.raises(ConfigError, match="cannot be a Hugging Face CLIPModel"):  # before reading the checkpoint
        export_run(config, str(tmp_path / "run"))
