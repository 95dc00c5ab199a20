"""The Llama-style decoder (RMSNorm, rotary positions, SwiGLU, grouped-query attention, no biases, untied output):
logits against Hugging Face's LlamaForCausalLM from the same weights (interop/llama_weights.py), rotary positions
against their defining property, 8 devices, the errors a user meets (the cache and left padding:
tests/test_language_model.py); and a run started from a Llama checkpoint folder with its tokenizer.model
(configs/lm.py:pretrained=), its ids relabelled."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_training import assert_same_params, run_steps, tiny_decoder_on_a_mesh, token_rows

from configs import lm
from configs.errors import ConfigError
from evaluation.generate import generate_text
from input_pipeline import lm_text
from input_pipeline.llama_tokenizer import LlamaTokenizer, vocabulary_order
from input_pipeline.tokenizer import train_tokenizer
from interop.llama_weights import convert_llama, export_hf_llama
from interop.pretrained import load_pretrained_params
from models import generation as gen
from models.language_model import DecoderLM, rotary
from models.two_tower import build_model
from tests.interop_reference import nested, require_torch
from training.loop import train_and_evaluate
from training.mesh import make_mesh
from training.validation import validate_config

VOCAB = 96


def _save_llama(folder, **overrides):
    """A random tiny LlamaForCausalLM saved to `folder` (norm weights perturbed, so a missed norm shows);
    returns the torch model."""
    torch, transformers = require_torch()
    torch.manual_seed(0)
    options = dict(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=88, rms_norm_eps=1e-5, max_position_embeddings=64, tie_word_embeddings=False,
        rope_theta=500.0,
    )  # fmt: skip
    options.update(overrides)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**options)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "bias" in name:
                p.add_(0.3 * torch.randn_like(p))
    model.save_pretrained(folder)
    return model


def _ours(params, decoder):
    model = DecoderLM(vocab_size=VOCAB, max_len=64, layer_norm_eps=decoder["norm_eps"], **{
        k: v for k, v in decoder.items() if k != "norm_eps"
    })  # fmt: skip
    return model, nested(params)


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # grouped-query (4 heads, 2 key-value heads), untied, no biases, rope base 500
        {"num_key_value_heads": 4, "tie_word_embeddings": True, "attention_bias": True, "mlp_bias": True},
        {"num_key_value_heads": 1, "rope_theta": 10_000.0},  # multi-query
    ],
)
def test_logits_match_transformers_llama(tmp_path, overrides):
    torch, _ = require_torch()
    reference = _save_llama(tmp_path, **overrides)
    params, decoder = convert_llama(str(tmp_path))
    assert decoder["kv_heads"] == overrides.get("num_key_value_heads", 2)
    assert decoder["tie_embeddings"] == overrides.get("tie_word_embeddings", False)
    assert decoder["rope_theta"] == overrides.get("rope_theta", 500.0)
    model, tree = _ours(params, decoder)
    tokens = np.random.default_rng(1).integers(1, VOCAB, size=(3, 20))
    with torch.no_grad():
        expected = reference(torch.as_tensor(tokens)).logits.numpy()
    got, _ = model.apply({"params": tree}, jnp.asarray(tokens, jnp.int32))
    np.testing.assert_allclose(np.asarray(got["logits"]), expected, atol=2e-4, rtol=2e-4)
    assert np.abs(expected).max() > 0.1  # a real comparison, not two near-zero arrays


def test_converted_params_have_the_models_own_structure(tmp_path):
    _save_llama(tmp_path)
    params, decoder = convert_llama(str(tmp_path))
    model, tree = _ours(params, decoder)
    initial = model.init(jax.random.PRNGKey(0), jnp.ones((1, 4), jnp.int32))["params"]
    shapes = jax.tree.map(lambda x: x.shape, initial)
    assert jax.tree.map(lambda x: x.shape, tree) == shapes
    assert shapes["block0"]["attn"]["key"]["kernel"] == (32, 2, 8)  # two key-value heads of 8
    assert shapes["block0"]["mlp"]["gate"]["kernel"] == (32, 88) and "pos_embedding" not in shapes


def _rotate_pairs_numpy(x, position, theta):
    """Rotary positions written out by hand: pair (i, i + D/2) turned by position * theta^(-2i/D)."""
    d = x.shape[-1]
    out = x.astype(np.float64).copy()
    for i in range(d // 2):
        angle = position * theta ** (-2 * i / d)
        a, b = x[..., i], x[..., i + d // 2]
        out[..., i] = a * np.cos(angle) - b * np.sin(angle)
        out[..., i + d // 2] = a * np.sin(angle) + b * np.cos(angle)
    return out


def test_rotary_is_a_rotation_whose_scores_depend_on_relative_position_only():
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(2, 1, 1, 1, 8)).astype(np.float32)
    turn = lambda x, p: np.asarray(rotary(jnp.asarray(x), jnp.full((1, 1), p), 100.0))  # noqa: E731
    np.testing.assert_allclose(turn(q, 5), _rotate_pairs_numpy(q, 5, 100.0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(turn(q, 7)), np.linalg.norm(q), rtol=1e-6)
    score = lambda i, j: float(np.sum(turn(q, i) * turn(k, j)))  # noqa: E731
    assert score(9, 4) == pytest.approx(score(5, 0), rel=1e-4)
    assert score(9, 4) != pytest.approx(score(9, 3), rel=1e-2)  # the offset does matter


def test_default_mlp_width_keeps_the_gelu_mlps_parameter_count():
    gelu = DecoderLM(vocab_size=8, width=48, depth=1, heads=4, max_len=8)
    swiglu = DecoderLM(vocab_size=8, width=48, depth=1, heads=4, max_len=8, mlp="swiglu")
    assert (gelu.mlp_width, swiglu.mlp_width) == (192, 128)  # 2 x 48 x 192 = 3 x 48 x 128 weights


def _llama_config():
    config = lm.get_config()
    lm.llama_style(config.model.decoder)
    return config


def test_validation_names_the_fix_before_jax_starts():
    config = _llama_config()
    validate_config(config)
    config.model.decoder.kv_heads = 3
    with pytest.raises(ConfigError, match="kv_heads .3. does not divide"):
        validate_config(config)
    config = _llama_config()
    config.model.decoder.update(width=96, heads=32)  # heads 3 wide
    with pytest.raises(ConfigError, match="width / heads is even"):
        validate_config(config)
    config = _llama_config()
    config.model.decoder.norm = "batch_norm"
    with pytest.raises(ConfigError, match="decoder norm 'batch_norm'.*rms_norm"):
        validate_config(config)


def test_bad_checkpoints_are_one_sentence_naming_the_problem(tmp_path):
    _save_llama(tmp_path / "ok")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ConfigError, match="'bert' model; pass a Llama"):
        convert_llama(str(tmp_path / "bert"))
    config = json.loads((tmp_path / "ok" / "config.json").read_text())
    config["rope_parameters"] = {"rope_type": "linear", "factor": 2.0, "rope_theta": 500.0}
    (tmp_path / "ok" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="rope scaling is 'linear'"):
        convert_llama(str(tmp_path / "ok"))
    config["rope_parameters"] = {"rope_type": "default", "rope_theta": 500.0}
    config["num_hidden_layers"] = 3  # the file holds two
    (tmp_path / "ok" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="layers.2.input_layernorm.weight is missing"):
        convert_llama(str(tmp_path / "ok"))


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices")
def test_llama_style_steps_on_8_devices_with_split_heads_equal_one_device():
    config = tiny_decoder_on_a_mesh(_llama_config(), heads=4, kv_heads=2)
    rng = np.random.default_rng(0)
    batches = [{"text": token_rows(rng, 13)} for _ in range(2)]
    ref_params, ref_metrics = run_steps(config, make_mesh({"data": 1}, jax.devices()[:1]), batches)
    params, metrics = run_steps(config, make_mesh({"data": 2, "fsdp": 2, "model": 2}), batches)
    for m, r in zip(metrics, ref_metrics, strict=True):
        np.testing.assert_allclose(m["loss"], r["loss"], rtol=1e-5)
    assert not np.allclose(ref_metrics[0]["loss"], ref_metrics[1]["loss"])
    assert_same_params(params, ref_params)


def _llama_folder(folder, extra_rows: int = 8):
    """A random tiny Llama checkpoint beside a tokenizer.model of Llama's conventions (<unk> 0, <s> 1, </s> 2, byte
    pieces from 3) trained on the lm_text corpus; its embedding has `extra_rows` more rows than the tokenizer has
    pieces, as checkpoints padded to a multiple of 64 do. Returns (torch model, SentencePieceProcessor)."""
    import sentencepiece as spm

    folder.mkdir(exist_ok=True)
    texts = [lm_text.record(0, "train", i)["text"] for i in range(3000)]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_prefix=str(folder / "tokenizer"), vocab_size=400, unk_id=0, bos_id=1,
        eos_id=2, pad_id=-1, byte_fallback=True, hard_vocab_limit=False, character_coverage=1.0, minloglevel=2,
    )  # fmt: skip
    sp = spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    return _save_llama(folder, vocab_size=sp.get_piece_size() + extra_rows), sp


def test_llama_tokenizer_relabels_four_ids_and_drops_the_nul_byte(tmp_path):
    _, sp = _llama_folder(tmp_path)
    tokenizer = LlamaTokenizer(str(tmp_path))
    text = "the vokim is red . question : what colour is the vokim ?"
    llama = sp.encode(text)
    ours = tokenizer.encode([text], 64)[0]
    relabel = {0: 1, 1: 2, 2: 3, 3: 0}
    expected = [2, *(relabel.get(i, i) for i in llama), 3]  # BOS, pieces, EOS in the project's ids
    assert list(ours[: len(expected)]) == expected and not ours[len(expected) :].any()
    assert tokenizer.decode(ours) == sp.decode(llama) == text
    assert tokenizer.decode([*ours[:5], tokenizer.vocab_size + 3]) == sp.decode(llama[:4])  # a padded row: nothing
    assert 3 in sp.encode("red\x00 blue")  # byte fallback writes the NUL as Llama's id 3 ...
    nul = tokenizer.encode(["red\x00 blue"], 16)[0]
    assert 0 not in nul[: list(nul).index(3)]  # ... which the tokenizer drops rather than pad inside a text
    own = tmp_path / "own.model"
    project = train_tokenizer(texts=["a red square", "a blue circle"] * 50, vocab_size=300)
    own.write_bytes(project.model_proto)
    with pytest.raises(ConfigError, match="not a Llama-family SentencePiece model"):
        LlamaTokenizer(str(own))
    ids = project.encode(["a red square"], 32)[0]
    assert project.decode([*ids, project.vocab_size]) == "a red square"  # the project's tokenizer too


def test_a_decoder_started_from_a_llama_folder_gives_its_probabilities(tmp_path):
    torch, _ = require_torch()
    reference, sp = _llama_folder(tmp_path)
    config = lm.get_config(f"pretrained={tmp_path}")
    validate_config(config)
    d = config.model.decoder
    assert (config.text.tokenizer, d.norm, d.position, d.kv_heads, d.vocab_size) == (
        "llama", "rms_norm", "rope", 2, sp.get_piece_size() + 8,
    )  # fmt: skip
    tokenizer = LlamaTokenizer(config.text.tokenizer_path)
    model = build_model(config, tokenizer.vocab_size)
    fresh = model.init(jax.random.PRNGKey(0), jnp.ones((1, 4), jnp.int32))["params"]
    params, copied = load_pretrained_params(config, fresh)
    assert len(copied) == len(jax.tree.leaves(fresh))  # every parameter came from the checkpoint
    texts = ["the vokim is red .", "question : what colour is the bedak ? answer :"]
    logits = model.apply({"params": params}, jnp.asarray(tokenizer.encode(texts, 32)))[0]["logits"]
    ours = np.asarray(jax.nn.log_softmax(logits, axis=-1))
    order = vocabulary_order(d.vocab_size)
    for row, text in enumerate(texts):
        llama = [1, *sp.encode(text)]  # <s> and the pieces, as transformers reads them
        with torch.no_grad():
            expected = torch.log_softmax(reference(torch.as_tensor([llama])).logits, -1)[0].numpy()
        np.testing.assert_allclose(ours[row, : len(llama)], expected[:, order], atol=2e-4)


def test_training_from_a_llama_folder_then_generating(tmp_path):
    require_torch()
    _llama_folder(tmp_path / "llama")
    config = lm.get_config(f"pretrained={tmp_path / 'llama'}")
    config.total_steps = config.eval_every_steps = config.checkpoint_every_steps = 2
    config.batch_size, config.log_every_steps, config.optimizer.warmup_steps = 8, 1, 1
    config.data.train_size = 200
    config.eval.update(num_examples=8, batch_size=8)
    config.generation.max_new_tokens = 6
    validate_config(config)
    summary = train_and_evaluate(config, str(tmp_path / "run"))
    assert math.isfinite(summary["final_loss"]) and summary["eval"]["language/perplexity"] > 1
    assert not (tmp_path / "run" / "tokenizer.model").exists()  # the checkpoint's own tokenizer, not a new one
    (text,) = generate_text(config, str(tmp_path / "run"), ["the vokim is"])
    assert text.startswith("the vokim is")


def test_a_checkpoint_and_a_config_of_different_kinds_are_refused(tmp_path):
    _save_llama(tmp_path)
    from configs import clip

    with pytest.raises(ConfigError, match="a Llama checkpoint starts a language model; use configs/lm.py"):
        clip.get_config(f"pretrained={tmp_path}")
    with pytest.raises(ConfigError, match="holds no tokenizer.model"):
        lm.get_config(f"pretrained={tmp_path}")


def test_remat_recomputes_the_same_gradients():
    options = dict(vocab_size=40, width=32, depth=2, heads=4, max_len=16, kv_heads=2, norm="rms_norm",
                   position="rope", mlp="swiglu", bias=False, tie_embeddings=False)  # fmt: skip
    tokens = jnp.asarray(np.random.default_rng(0).integers(1, 40, size=(3, 12)), jnp.int32)
    plain, remat = DecoderLM(**options), DecoderLM(**options, remat=True)
    params = plain.init(jax.random.PRNGKey(0), tokens)["params"]

    def loss(model, p):
        logits = model.apply({"params": p}, tokens)[0]["logits"]
        return -jnp.mean(jax.nn.log_softmax(logits)[:, :-1].max(-1) * jnp.arange(1, 12))  # any smooth function

    (value, grads), (value_r, grads_r) = (jax.value_and_grad(lambda p, m=m: loss(m, p))(params) for m in (plain, remat))
    np.testing.assert_allclose(value_r, value, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), grads_r, grads)
    assert jax.tree.structure(remat.init(jax.random.PRNGKey(0), tokens)["params"]) == jax.tree.structure(params)


@pytest.mark.parametrize("style", ["gpt", "llama"])
def test_the_xla_kernel_computes_the_dense_attention_of_right_padded_training_batches(style):
    llama = dict(kv_heads=2, norm="rms_norm", position="rope", mlp="swiglu", bias=False, tie_embeddings=False)
    options = dict(vocab_size=40, width=32, depth=2, heads=4, max_len=16, **(llama if style == "llama" else {}))
    tokens = np.random.default_rng(0).integers(4, 40, size=(4, 12))
    tokens[1, 7:], tokens[3, 3:] = 0, 0  # padded on the right, as training batches are
    tokens = jnp.asarray(tokens, jnp.int32)
    dense, kernel = DecoderLM(**options), DecoderLM(**options, attention="xla")
    params = dense.init(jax.random.PRNGKey(1), tokens)["params"]

    def loss(model, p):
        logits = model.apply({"params": p}, tokens)[0]["logits"]
        return jnp.sum(jax.nn.log_softmax(logits)[..., 5] * (tokens != 0))

    (value, grads), (value_k, grads_k) = (
        jax.value_and_grad(lambda p, m=m: loss(m, p))(params) for m in (dense, kernel)
    )
    np.testing.assert_allclose(value_k, value, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4), grads_k, grads)
    got = kernel.apply({"params": params}, tokens)[0]["logits"]
    want = dense.apply({"params": params}, tokens)[0]["logits"]
    np.testing.assert_allclose(got, want, atol=1e-5)  # every position, the padded ones too
    prompts, mask = gen.left_pad([[2, 5, 6], [2, 9]])  # generation (a cache, left padding) stays dense: same tokens
    same = [
        gen.generate(m, params, prompts, mask, jax.random.PRNGKey(0), gen.Decoding("greedy", 5))
        for m in (dense, kernel)
    ]
    np.testing.assert_array_equal(*same)


def test_the_decoder_refuses_the_pallas_kernel_before_jax_starts():
    config = lm.get_config()
    config.model.attention = "pallas"
    with pytest.raises(ConfigError, match="attention='pallas' cannot; use 'xla'"):
        validate_config(config)


def _exported_state(folder) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("overrides", [{}, {"tie_word_embeddings": True, "attention_bias": True, "mlp_bias": True}])
def test_export_writes_the_checkpoint_back_for_transformers(tmp_path, overrides):
    torch, transformers = require_torch()
    reference = _save_llama(tmp_path / "in", **overrides)
    params, decoder = convert_llama(str(tmp_path / "in"))
    config = lm.get_config()
    config.model.decoder.update(decoder, max_len=64)
    (tmp_path / "own.model").write_bytes(b"our sentencepiece model")
    folder = export_hf_llama(nested(params), config, str(tmp_path / "out"), tokenizer_path=str(tmp_path / "own.model"))
    original = {k: v.numpy() for k, v in reference.state_dict().items() if "rotary" not in k}
    if overrides:
        original.pop("lm_head.weight")  # tied: transformers saves no copy of the embedding
    exported = _exported_state(tmp_path / "out")
    assert sorted(exported) == sorted(original)
    for name, value in original.items():
        np.testing.assert_array_equal(exported[name], value, err_msg=name)
    loaded = transformers.LlamaForCausalLM.from_pretrained(folder).eval()
    tokens = torch.as_tensor(np.random.default_rng(2).integers(1, VOCAB, size=(2, 12)))
    with torch.no_grad():
        np.testing.assert_allclose(loaded(tokens).logits.numpy(), reference(tokens).logits.numpy(), atol=1e-5)
    hf = json.loads((tmp_path / "out" / "config.json").read_text())
    assert (hf["bos_token_id"], hf["eos_token_id"], hf["pad_token_id"]) == (2, 3, 0)  # the project's tokenizer
    assert (tmp_path / "out" / "tokenizer.model").read_bytes() == b"our sentencepiece model"


def test_export_of_a_run_from_a_llama_folder_restores_llamas_ids(tmp_path):
    require_torch()
    _llama_folder(tmp_path / "in")
    config = lm.get_config(f"pretrained={tmp_path / 'in'}")
    tokenizer = LlamaTokenizer(config.text.tokenizer_path)
    model = build_model(config, tokenizer.vocab_size)
    fresh = model.init(jax.random.PRNGKey(0), jnp.ones((1, 4), jnp.int32))["params"]
    params, _ = load_pretrained_params(config, fresh)  # the rows in the project's id order
    export_hf_llama(jax.device_get(params), config, str(tmp_path / "out"), tokenizer_path=config.text.tokenizer_path)
    original = _exported_state(tmp_path / "in")
    exported = _exported_state(tmp_path / "out")
    for name, value in original.items():
        np.testing.assert_allclose(exported[name], value, atol=0, err_msg=name)  # Llama's order again, exactly
    hf = json.loads((tmp_path / "out" / "config.json").read_text())
    assert (hf["bos_token_id"], hf["eos_token_id"], "pad_token_id" in hf) == (1, 2, False)
    assert (tmp_path / "out" / "tokenizer.model").read_bytes() == (tmp_path / "in" / "tokenizer.model").read_bytes()


def test_only_a_llama_style_decoder_exports(tmp_path):
    config = lm.get_config()  # GPT-2-style
    with pytest.raises(ConfigError, match="config.model.decoder.norm is 'layer_norm', not 'rms_norm'"):
        export_hf_llama({}, config, str(tmp_path), tokenizer_path="")


def test_a_trained_llama_style_run_exports_and_transformers_reads_it(tmp_path):
    """The user's path in-process (docs/language.md's `--mode=export` command runs main.py itself): train
    configs/pints.py (tiny), export_run, load the folder with transformers: the same next-token logits as the run's
    own model on the run's tokenizer."""
    torch, transformers = require_torch()
    from configs import pints
    from training.export import export_run
    from training.trained_runs import load_trained_run

    config = pints.get_config()
    config.model.decoder.depth = 1
    config.update(total_steps=2, eval_every_steps=2, checkpoint_every_steps=2, batch_size=8)
    config.data.train_size, config.eval.num_examples = 200, 8
    run = str(tmp_path / "pints")
    train_and_evaluate(config, run)
    assert export_run(config, run)[:2] == (os.path.join(run, "hf"), "LlamaForCausalLM")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    misused = subprocess.run([sys.executable, "main.py", "--config=configs/pints.py", f"--workdir={run}",
                              f"--export_dir={tmp_path / 'x'}"], capture_output=True, text=True, cwd=root)  # fmt: skip
    assert misused.returncode and "--export_dir is read only by --mode=export" in misused.stderr
    model, tokenizer, params, _ = load_trained_run(config, run)
    tokens = tokenizer.encode(["the vokim is red .", "the bedak is a star ."], 16)
    ours = np.asarray(model.apply({"params": params}, jnp.asarray(tokens))[0]["logits"])
    loaded = transformers.LlamaForCausalLM.from_pretrained(str(tmp_path / "pints" / "hf")).eval()
    with torch.no_grad():
        theirs = loaded(torch.as_tensor(tokens), attention_mask=torch.as_tensor(tokens != 0)).logits.numpy()
    real = tokens != 0
    np.testing.assert_allclose(theirs[real], ours[real], atol=2e-4, rtol=2e-4)
    import sentencepiece as spm

    exported = spm.SentencePieceProcessor(model_file=str(tmp_path / "pints" / "hf" / "tokenizer.model"))
    pieces = exported.encode("the vokim is red .")
    assert tokenizer.encode(["the vokim is red ."], 16)[0][1 : 1 + len(pieces)].tolist() == pieces
