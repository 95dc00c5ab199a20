"""SigLIP interop: a small random Hugging Face SiglipModel with its SentencePiece tokenizer, started from as
main.py does (configs/siglip.py:pretrained=FOLDER picks the `siglip` tokenizer; interop/pretrained.py loads
the params), gives transformers' token ids, image and text embeddings and logits (scale and bias) within
1e-4; exported back, the folder holds the same weights and transformers computes the same logits from it;
configs/lit.py:image=FOLDER locks its image tower."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import sentencepiece as spm
from safetensors.numpy import load_file

from input_pipeline.tokenizer import load_tokenizer
from interop.siglip_weights import export_hf_siglip
from tests.interop_reference import require_torch, sample_texts

TEXTS = sample_texts(np.random.default_rng(0), 100)  # unicode, punctuation, overlong and empty texts
MAX_LEN = 12


def _write_spiece(folder) -> int:
    """A SentencePiece model with SigLIP's special ids (pad 0, </s> 1, <unk> 2, no BOS) at folder/spiece.model;
    returns its vocabulary size."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(t.lower() for t in TEXTS), model_writer=model, vocab_size=120, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False, character_coverage=1.0, minloglevel=2,
    )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spiece.model").write_bytes(model.getvalue())
    return spm.SentencePieceProcessor(model_proto=model.getvalue()).get_piece_size()


def _tiny_hf_siglip(transformers, torch, vocab: int):
    """Each tower its own activation, epsilon, heads and MLP width (not a multiple of the width); image size 30
    with patch 8 (the last 6 pixel rows and columns are dropped, as by SigLIP's convolution)."""
    config = transformers.SiglipConfig(
        text_config=dict(vocab_size=vocab, hidden_size=32, intermediate_size=72, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=MAX_LEN, hidden_act="gelu",
                         layer_norm_eps=1e-5, pad_token_id=1, eos_token_id=1, bos_token_id=None),
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


def _started_from(folder: str, arg: str = "pretrained", config_module: str = "siglip"):
    """(config, model, params) as main.py builds them from configs/<config_module>.py:<arg>=<folder>."""
    import importlib

    from interop.pretrained import load_pretrained_params
    from models.two_tower import build_model
    from training.validation import validate_config

    config = importlib.import_module(f"configs.{config_module}").get_config(f"{arg}={folder}")
    validate_config(config)
    # training/loop.py's tokenizer: the checkpoint's, or (LiT's fresh text tower) one trained on the captions.
    tokenizer = (
        load_tokenizer(config.text.tokenizer_path, config.text.tokenizer) if config.text.tokenizer_path else None
    )
    model = build_model(config, tokenizer.vocab_size if tokenizer else config.text.vocab_size)
    size, length = config.data.image_size, config.model.text.max_len
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)), jnp.zeros((1, length), jnp.int32))
    )["params"]
    params, copied = load_pretrained_params(config, shapes)
    return config, tokenizer, model, params, copied


def _ours(model, params, images: np.ndarray, tokens: np.ndarray) -> dict:
    out = jax.jit(model.apply)({"params": params}, jnp.asarray(images), jnp.asarray(tokens, jnp.int32))
    out = {k: np.asarray(v) for k, v in out.items()}
    out["logits"] = out["text_embedding"] @ out["image_embedding"].T * np.exp(out["logit_scale"]) + out["logit_bias"]
    return out


def _reference(torch, model, images: np.ndarray, tokens: np.ndarray) -> dict:
    with torch.no_grad():
        out = model(input_ids=torch.tensor(tokens), pixel_values=torch.tensor(images.transpose(0, 3, 1, 2)))
    return {"image_features": out.image_embeds, "text_features": out.text_embeds, "logits": out.logits_per_text}


def test_siglip_tokenizer_gives_transformers_ids(tmp_path):
    _, transformers = require_torch()
    _write_spiece(tmp_path)
    reference = transformers.SiglipTokenizer(vocab_file=str(tmp_path / "spiece.model"))
    expected = reference(TEXTS, padding="max_length", max_length=MAX_LEN, truncation=True).input_ids
    np.testing.assert_array_equal(load_tokenizer(str(tmp_path), "siglip").encode(TEXTS, MAX_LEN), expected)


def test_siglip_folder_starts_a_run_with_transformers_embeddings_and_logits(tmp_path):
    torch, transformers = require_torch()
    hf_model = _tiny_hf_siglip(transformers, torch, _write_spiece(tmp_path / "hf"))
    hf_model.save_pretrained(tmp_path / "hf")
    config, tokenizer, model, params, copied = _started_from(str(tmp_path / "hf"))
    assert config.text.tokenizer == "siglip" and config.model.text.max_len == MAX_LEN
    assert len(copied) == len(jax.tree.leaves(params))  # every parameter comes from the checkpoint
    image, text = config.model.image, config.model.text
    assert (image.pool, image.ln_pre, text.pool, text.causal) == ("map", False, "final", False)
    assert (image.mlp_dim, text.mlp_dim, image.activation, text.activation) == (100, 72, "gelu_tanh", "gelu")
    assert (config.model.image_projection, config.model.text_projection) == ("none", "affine")
    assert config.data.image_size == 30  # not a multiple of the patch: SigLIP drops the remainder, as do we
    images = np.random.default_rng(0).normal(size=(4, 30, 30, 3)).astype(np.float32)
    tokens = tokenizer.encode([TEXTS[1], TEXTS[10], TEXTS[-1], ""], MAX_LEN)  # short, overlong, punctuated, empty
    ours = _ours(model, params, images, tokens)
    reference = _reference(torch, hf_model, images, tokens)
    # transformers' SiglipModel normalises the embeddings it returns; ours are the features before that.
    normalised = {k: ours[k] / np.linalg.norm(ours[k], axis=-1, keepdims=True) for k in reference if k != "logits"}
    for key in ("image_features", "text_features"):
        assert np.abs(normalised[key] - reference[key].numpy()).max() < 1e-4, key
    assert np.abs(ours["logits"] - reference["logits"].numpy()).max() < 1e-4
    np.testing.assert_allclose([ours["logit_scale"], ours["logit_bias"]], [2.3, -3.1], rtol=1e-6)

    folder = export_hf_siglip(jax.device_get(params), config, str(tmp_path / "back"), vocab_size=tokenizer.vocab_size)
    exported = load_file(f"{folder}/model.safetensors")
    original = {k: v.numpy() for k, v in hf_model.state_dict().items() if not k.endswith("position_ids")}
    assert exported.keys() == original.keys()
    for name, value in original.items():
        np.testing.assert_array_equal(exported[name], value, err_msg=name)
    back = transformers.SiglipModel.from_pretrained(folder).eval()
    assert np.abs(_reference(torch, back, images, tokens)["logits"].numpy() - reference["logits"].numpy()).max() < 1e-5


def test_lit_locks_a_siglip_image_tower(tmp_path):
    torch, transformers = require_torch()
    hf_model = _tiny_hf_siglip(transformers, torch, 50)
    hf_model.save_pretrained(tmp_path)
    config, _, _, params, copied = _started_from(str(tmp_path), "image", "lit")
    assert config.optimizer.frozen_prefixes == ("image_tower",) and config.model.text.kind == "clip"
    assert config.model.image.pool == "map" and config.model.image_projection == "linear"  # a fresh projection
    image_leaves = jax.tree_util.tree_flatten_with_path(params["image_tower"])[0]
    assert sorted(copied) == sorted("image_tower/" + "/".join(k.key for k in path) for path, _ in image_leaves)
    probe = hf_model.vision_model.head.probe.detach().numpy()
    np.testing.assert_array_equal(np.asarray(params["image_tower"]["map_head"]["probe"]), probe)
