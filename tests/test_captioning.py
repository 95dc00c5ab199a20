"""LiMBeR and CLOSE: the captioner's loss and prefix path against NumPy, CLOSE's noise adapter, generation with a
prefix against recomputation, the caption metrics on hand-built captions, validation, and both methods trained
from a tiny CLIP run and a tiny language model."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_training import assert_same_params, fake_run, run_steps, set_keys, tiny_decoder_on_a_mesh, token_rows

from configs import clip, close, limber, lm
from configs.errors import ConfigError
from evaluation.captioning_eval import attribute_accuracy, clip_score, first_mentions
from input_pipeline import shapes
from losses.captioning import caption_loss, noisy_embedding
from models import generation as gen
from models.captioner import PrefixCaptioner
from models.language_model import DecoderLM
from training.loop import train_and_evaluate
from training.mesh import make_mesh
from training.validation import validate_config


def _captioner(dropout=0.0, scale=1.0):
    model = PrefixCaptioner(DecoderLM(vocab_size=40, width=32, depth=1, heads=4, max_len=32), 3, dropout)
    params = model.init(jax.random.PRNGKey(0), jnp.ones((1, 8)), jnp.ones((1, 4), jnp.int32))["params"]
    return model, jax.tree.map(lambda x: x * scale, params)


def test_noise_adapter_keeps_unit_norm_and_matches_a_numpy_monte_carlo():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(20_000, 64)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    np.testing.assert_allclose(noisy_embedding(jnp.asarray(v), jax.random.PRNGKey(0), 0.0), v, atol=1e-6)
    for std in (0.04, 0.12, 0.32):
        noised = np.asarray(noisy_embedding(jnp.asarray(v), jax.random.PRNGKey(1), std))
        np.testing.assert_allclose(np.linalg.norm(noised, axis=1), 1.0, atol=1e-5)
        reference = v + std * rng.normal(size=v.shape)
        reference /= np.linalg.norm(reference, axis=1, keepdims=True)
        expected = np.mean(np.sum(reference * v, axis=1))  # about 1 / sqrt(1 + 64 std²)
        assert np.mean(np.sum(noised * v, axis=1)) == pytest.approx(expected, abs=3e-3)


def test_caption_loss_is_the_lm_cross_entropy_after_the_numpy_mapped_prefix():
    model, params = _captioner()
    rng = np.random.default_rng(0)
    features = rng.normal(size=(3, 8)).astype(np.float32)
    text = rng.integers(4, 40, size=(3, 7)).astype(np.int32)
    text[:, 0], text[1, 4:], text[2, 2:] = 2, 0, 0  # BOS; rows 1 and 2 end early
    config = limber.get_config()
    config.limber.dropout = 0.0
    loss, metrics = caption_loss(params, {"prefix_features": features, "text": text}, {}, jax.random.PRNGKey(0),
                                 model=model, config=config)  # fmt: skip
    kernel, bias = (np.asarray(params["prefix_map"][k]) for k in ("kernel", "bias"))
    prefix = (features @ kernel + bias).reshape(3, 3, 32)
    out, _ = model.lm.apply({"params": params["lm"]}, text[:, :-1], prefix=jnp.asarray(prefix))
    logits = np.asarray(out["logits"], np.float64)
    top = logits.max(-1, keepdims=True)
    log_probs = logits - top - np.log(np.sum(np.exp(logits - top), -1, keepdims=True))
    targets = text[:, 1:]
    nll = [-log_probs[b, i, targets[b, i]] for b in range(3) for i in range(6) if targets[b, i]]
    assert float(loss) == pytest.approx(np.mean(nll), rel=1e-5)
    assert float(metrics["tokens"]) == len(nll) == 6 + 3 + 1


def test_limber_dropout_and_close_noise_are_random_only_when_set():
    rng = np.random.default_rng(1)
    batch = {"prefix_features": rng.normal(size=(4, 8)).astype(np.float32),
             "text": rng.integers(4, 40, size=(4, 6)).astype(np.int32)}  # fmt: skip
    config = close.get_config()
    for dropout, std, random in ((0.0, 0.0, False), (0.5, 0.0, True), (0.0, 0.3, True)):
        model, params = _captioner(dropout=dropout, scale=6.0)
        config.close.noise_std = std
        a, b = (float(caption_loss(params, batch, {}, jax.random.PRNGKey(k), model=model, config=config)[0])
                for k in (3, 4))  # fmt: skip
        assert (abs(a - b) > 1e-3 * abs(a)) == random, (dropout, std, a, b)


def test_generation_with_a_prefix_equals_recomputation_token_for_token():
    model, params = _captioner(scale=6.0)  # peaked, varied distributions
    features = np.random.default_rng(2).normal(size=(4, 8)).astype(np.float32)
    prefix = model.apply({"params": params}, jnp.asarray(features), method=model.prefix)
    tokens = np.full((4, 1), gen.BOS_ID, np.int32)
    cached = np.asarray(gen.generate(model.lm, params["lm"], tokens, tokens != 0, jax.random.PRNGKey(0),
                                     gen.Decoding("greedy", 10), prefix=prefix))  # fmt: skip
    # The reference reruns the whole sequence for every new token, without a cache.
    forward = jax.jit(lambda seq: model.lm.apply({"params": params["lm"]}, seq, prefix=prefix)[0]["logits"][:, -1])
    sequence = tokens
    for _ in range(10):
        logits = np.array(forward(jnp.asarray(sequence)))
        logits[:, [gen.PAD_ID, gen.BOS_ID]] = -np.inf
        sequence = np.concatenate([sequence, logits.argmax(-1)[:, None]], axis=1)
    reference = sequence[:, 1:]
    for row in reference:  # a row stops at its first EOS and pads after it
        ends = np.flatnonzero(row == gen.EOS_ID)
        if len(ends):
            row[ends[0] + 1 :] = gen.PAD_ID
    np.testing.assert_array_equal(cached, reference)
    assert len({tuple(r) for r in cached}) > 1  # the prefix steers the text: the check has teeth


def test_first_mentions_read_canonical_words_and_paraphrases():
    colour, shape = shapes.COLOURS.index, shapes.SHAPES.index
    assert first_mentions("there is a crimson five-pointed star at the top .") == (colour("red"), shape("star"))
    assert first_mentions("a starlet , tiny and navy") == (colour("blue"), shape("star"))
    assert first_mentions("one plus sign in lemon") == (colour("yellow"), shape("cross"))
    assert first_mentions("a leafy green three-sided shape") == (colour("green"), shape("triangle"))
    assert first_mentions("a box and a disc , the disc is red and the box blue") == (colour("red"), shape("square"))
    assert first_mentions("the picture shows something") == (None, None)
    assert first_mentions("redder squares") == (None, None)  # whole words only


def test_attribute_accuracy_of_a_perfect_and_a_random_captioner():
    rng = np.random.default_rng(0)
    n = 4000
    colours, shape_ids = rng.integers(8, size=n), rng.integers(8, size=n)
    true = [
        f"there is a large {shapes.COLOURS[c]} {shapes.SHAPES[s]} at the top ."
        for c, s in zip(colours, shape_ids, strict=True)
    ]
    assert attribute_accuracy(true, colours, shape_ids) == {"colour": 100.0, "shape": 100.0, "colour_shape": 100.0}
    guessed = attribute_accuracy([true[i] for i in rng.permutation(n)], colours, shape_ids)
    assert guessed["colour"] == pytest.approx(12.5, abs=2.0) and guessed["shape"] == pytest.approx(12.5, abs=2.0)
    assert guessed["colour_shape"] == pytest.approx(100 / 64, abs=0.8)


def test_clip_score_is_hessels_weighted_clipped_cosine():
    a = np.eye(3, 4)
    assert clip_score(a, a) == pytest.approx(250.0)
    assert clip_score(a, -a) == 0.0
    b = np.array([[0.6, 0.8, 0, 0]] * 3)
    assert clip_score(a, b) == pytest.approx(100 * 2.5 * (0.6 + 0.8 + 0) / 3)


def test_validation_names_the_fix_before_jax_starts(tmp_path):
    clip_run = fake_run(tmp_path / "clip", clip.get_config())
    lm_run = fake_run(tmp_path / "lm", lm.get_config())

    def config_with(**changes):
        config = limber.get_config()
        config.init_from.workdir, config.limber.lm_workdir = clip_run, lm_run
        return set_keys(config, changes)

    validate_config(config_with())
    for changes, message in (
        ({"model.kind": "decoder"}, "model.kind='captioner'"),
        ({"init_from.workdir": ""}, "config.init_from.workdir to a configs/clip.py run"),
        ({"limber.lm_workdir": ""}, "config.limber.lm_workdir"),
        ({"model.embed_dim": 64}, "--config.model.embed_dim=128"),
        ({"model.decoder.width": 64}, "--config.model.decoder.width=96"),
        ({"limber.lm_workdir": clip_run}, "no language-model run"),
        ({"limber.prefix_tokens": 40}, "leave no room"),
        ({"limber.dropout": 1.0}, "limber.dropout"),
        ({"data.name": "lm_text"}, "captions images"),
    ):
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
            validate_config(config_with(**changes))
    config = config_with()
    config.evals.shapes = dict(type="shapes_zero_shot", prefix="")
    with pytest.raises(ConfigError, match="this run trains a captioner"):
        validate_config(config)
    config = close.get_config()
    config.init_from.workdir, config.close.lm_workdir, config.close.noise_std = clip_run, lm_run, -0.1
    with pytest.raises(ConfigError, match="close.noise_std"):
        validate_config(config)
    from evaluation.run import evaluate_checkpoint

    with pytest.raises(ConfigError, match="rerun the training command"):
        evaluate_checkpoint(config_with(), clip_run)


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices")
def test_captioner_steps_on_8_devices_equal_one_device():
    config = tiny_decoder_on_a_mesh(limber.get_config())
    config.model.embed_dim, config.text.vocab_size = 16, 64
    config.optimizer.frozen_prefixes = ()  # the map and the LM both move, so both are compared
    rng = np.random.default_rng(0)
    batches = [
        {"text": token_rows(rng, 10), "prefix_features": rng.normal(size=(16, 16)).astype(np.float32)} for _ in range(2)
    ]
    ref_params, ref_metrics = run_steps(config, make_mesh({"data": 1}, jax.devices()[:1]), batches)
    params, metrics = run_steps(config, make_mesh({"data": 4, "fsdp": 2}), batches)
    for m, r in zip(metrics, ref_metrics, strict=True):
        np.testing.assert_allclose(m["loss"], r["loss"], rtol=1e-5)
    assert_same_params(params, ref_params)


def _tiny(config, steps=2):
    config.total_steps = config.eval_every_steps = config.checkpoint_every_steps = steps
    config.batch_size, config.data.train_size, config.data.cache_dir = 16, 64, ""
    config.eval.num_examples, config.eval.batch_size = 32, 32
    config.optimizer.warmup_steps = 0  # two steps that move every trained parameter
    return config


def test_limber_and_close_train_from_a_clip_run_and_a_language_model(tmp_path, capsys):
    clip_config = _tiny(clip.get_config())
    clip_config.model.image.depth = clip_config.model.text.depth = 1
    clip_config.evals = {}  # the captioners read its checkpoint only
    train_and_evaluate(clip_config, str(tmp_path / "clip"))
    lm_config = _tiny(lm.get_config())
    lm_config.model.decoder.update(width=32, depth=1, heads=2)
    lm_config.evals = {}
    train_and_evaluate(lm_config, str(tmp_path / "lm"))
    from input_pipeline.tokenizer import load_tokenizer
    from models.two_tower import build_model
    from training.trained_runs import restore_params

    vocab = load_tokenizer(str(tmp_path / "lm" / "tokenizer.model")).vocab_size

    summaries, params = {}, {}
    for module in (limber, close):
        config = _tiny(module.get_config())
        config.model.decoder.update(width=32, depth=1, heads=2)
        config.init_from.workdir = str(tmp_path / "clip")
        config[config.objective].lm_workdir = str(tmp_path / "lm")
        validate_config(config)
        summaries[config.objective] = train_and_evaluate(config, str(tmp_path / config.objective))
        model = build_model(config, vocab)
        params[config.objective] = restore_params(config, str(tmp_path / config.objective), model)[0]
    lm_params = restore_params(lm_config, str(tmp_path / "lm"), build_model(lm_config, vocab))[0]
    assert_same_params(params["limber"]["lm"], lm_params, atol=0)  # LiMBeR trains the map alone
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.abs(a - b).max()), params["close"]["lm"], lm_params))
    assert max(moved) > 1e-4  # CLOSE trains the language model too
    for summary in summaries.values():
        e = summary["eval"]
        assert 0 <= e["captioning/colour_shape"] <= 100 and e["captioning/chance_colour_shape"] == 100 / 64
        assert e["captioning/reference_clip_score"] > 0 and e["captioning/modality_gap"] > 0
    out = capsys.readouterr().out
    assert "caption accuracy (images)" in out and "modality gap" in out


def test_captions_of_your_files_skip_and_count_bad_examples(tmp_path, caplog):
    import real_data as rd

    from training.caption_task import image_caption_pairs

    clip_config = clip.get_config()
    clip_run = fake_run(tmp_path / "clip", clip_config)
    for i in range(3):
        (tmp_path / f"{i}.jpg").write_bytes(rd.photo(i))
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    lines = [json.dumps({"image": f"{i % 3}.jpg", "caption": f"photo {i}"}) for i in range(20)]
    lines[4:4] = ["{not json", json.dumps({"image": "broken.jpg", "caption": "x"}), json.dumps({"image": "0.jpg"})]
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    config = limber.get_config("data=jsonl")
    config.init_from.workdir, config.data.path, config.batch_size = clip_run, str(tmp_path / "train.jsonl"), 8
    images, captions = image_caption_pairs(config, "train", 18)
    assert captions == [f"photo {i}" for i in range(18)]
    assert images.shape == (18, clip_config.data.image_size, clip_config.data.image_size, 3)
    assert "Skipped 3 examples" in caplog.text
    config.batch_size = 32
    with pytest.raises(ConfigError, match="fewer than a batch"):
        image_caption_pairs(config, "train", 100)


def test_dry_run_batch_of_a_captioner_and_a_language_model():
    from training.dry_run import abstract_batch

    mesh = make_mesh({"data": 1}, jax.devices()[:1])
    config = limber.get_config()
    batch = abstract_batch(config, mesh)
    assert set(batch) == {"text", "prefix_features"}
    assert batch["text"].shape == (config.batch_size, config.model.decoder.max_len + 1 - config.limber.prefix_tokens)
    assert batch["prefix_features"].shape == (config.batch_size, config.model.embed_dim)
    config = lm.get_config()
    assert {k: v.shape for k, v in abstract_batch(config, mesh).items()} == {
        "text": (config.batch_size, config.model.decoder.max_len + 1)
    }
