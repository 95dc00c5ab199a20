"""SPACE-2 (losses/space2.py): tree scores, soft multi-view SupCon and MLM against NumPy and hand-computed values;
the model's heads; the method through the real trainer."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_training import assert_same_params, run_steps

from configs import space2 as space2_config
from configs.errors import ConfigError
from input_pipeline import dialog_frames
from input_pipeline.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from losses import masked_lm, space2
from models.two_tower import build_model
from training.loop import train_and_evaluate
from training.mesh import make_mesh
from training.validation import validate_config


def _ids(*views: tuple[int, ...]) -> np.ndarray:
    """One frame's [V, 3] ids from per-view tuples, padded with -1."""
    return np.array([list(v) + [-1] * (3 - len(v)) for v in views], np.int32)


def test_jaccard_per_view_by_hand():
    a = _ids((1,), (5, 6), ())
    b = _ids((1,), (6, 7, 8), ())
    c = _ids((2,), (), ())
    scores = np.asarray(space2.jaccard_scores(jnp.array([a, b, c]), jnp.array([a, b, c])))
    assert scores.shape == (3, 3, 3)
    np.testing.assert_allclose(scores[0], [[1, 1, 0], [1, 1, 0], [0, 0, 1]])
    # {5, 6} vs {6, 7, 8}: one shared of four; {5, 6} vs {}: none of two; {} vs {}: 0 by definition.
    np.testing.assert_allclose(scores[1], [[1, 0.25, 0], [0.25, 1, 0], [0, 0, 0]])
    np.testing.assert_allclose(scores[2], np.zeros((3, 3)))


def _supcon_reference(features: np.ndarray, scores: np.ndarray | None, tau: float, tau_b: float) -> float:
    """METHODS.md §20's formula, a loop over anchors in float64."""
    n = len(features)
    b = n // 2
    total = 0.0
    for i in range(n):
        logits = {k: features[i] @ features[k] / tau for k in range(n) if k != i}
        log_denominator = np.log(sum(np.exp(v) for v in logits.values()))
        weights = {}
        for j in range(n):
            if j == i:
                continue
            twin = j == (i + b) % n
            weights[j] = 1.0 if twin else (0.0 if scores is None else scores[i % b, j % b])
        total += (
            -(tau / tau_b) * sum(w * (logits[j] - log_denominator) for j, w in weights.items()) / sum(weights.values())
        )
    return total / n


@pytest.mark.parametrize("with_scores", [True, False])
def test_soft_supcon_equals_the_formula(with_scores):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(8, 5))
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    scores = rng.uniform(size=(4, 4)) * (rng.uniform(size=(4, 4)) < 0.5) if with_scores else None
    got = space2.soft_supcon_loss(jnp.array(features, jnp.float32), None if scores is None else jnp.array(scores,
                                  jnp.float32), 0.1, 0.07)  # fmt: skip
    np.testing.assert_allclose(float(got), _supcon_reference(features, scores, 0.1, 0.07), rtol=1e-5)


def test_views_are_averaged_and_identical_twins_with_far_negatives_cost_nothing():
    rng = np.random.default_rng(1)
    views = rng.normal(size=(6, 3, 4)).astype(np.float32)
    views /= np.linalg.norm(views, axis=-1, keepdims=True)
    scores = rng.uniform(size=(3, 3, 3)).astype(np.float32)
    per_view = [float(space2.soft_supcon_loss(jnp.array(views[:, v]), jnp.array(scores[v]), 0.07, 0.07))
                for v in range(3)]  # fmt: skip
    got = float(space2.multi_view_loss(jnp.array(views), jnp.array(scores), 0.07, 0.07))
    np.testing.assert_allclose(got, np.mean(per_view), rtol=1e-6)
    # Twins equal and every other pair orthogonal: the loss is log(1 + (n - 2) e^{-1/tau}), n = 6.
    basis = np.eye(3, dtype=np.float32)
    twins = jnp.array(np.concatenate([basis, basis]))
    expected = math.log(1 + 4 * math.exp(-1 / 0.5))
    np.testing.assert_allclose(float(space2.soft_supcon_loss(twins, None, 0.5, 0.5)), expected, rtol=1e-5)


def test_mlm_masks_pieces_only_in_berts_proportions():
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, masked_lm.UNKNOWN_ID, 2, 3) and masked_lm.FIRST_PIECE == 4
    rng = np.random.default_rng(2)
    tokens = rng.integers(4, 100, size=(400, 50)).astype(np.int32)
    tokens[:, 0], tokens[:, 40], tokens[:, 41:] = BOS_ID, EOS_ID, PAD_ID
    inputs, labels = (np.asarray(x) for x in masked_lm.mlm_inputs(jnp.array(tokens), jax.random.PRNGKey(0), 100, 0.15))
    chosen = labels >= 0
    assert not chosen[:, [0, 40]].any() and not chosen[:, 41:].any()
    np.testing.assert_array_equal(labels[chosen], tokens[chosen])
    np.testing.assert_array_equal(inputs[~chosen], tokens[~chosen])
    n = chosen.sum()
    assert abs(n / (400 * 39) - 0.15) < 0.01
    masked, kept = (inputs[chosen] == 100).mean(), (inputs[chosen] == tokens[chosen]).mean()
    assert abs(masked - 0.8) < 0.02 and abs(kept - (0.1 + 0.1 / 96)) < 0.02
    assert inputs[chosen].max() <= 100 and inputs[chosen].min() >= 4


def test_mlm_loss_is_the_token_mean_cross_entropy():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 3, 5)).astype(np.float32)
    labels = np.array([[1, -1, 4], [-1, -1, 0]], np.int32)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.mean([log_p[0, 0, 1], log_p[0, 2, 4], log_p[1, 2, 0]])
    accuracy = np.mean([logits[0, 0].argmax() == 1, logits[0, 2].argmax() == 4, logits[1, 2].argmax() == 0])
    value, acc = masked_lm.mlm_loss(jnp.array(logits), jnp.array(labels))
    np.testing.assert_allclose(float(value), expected, rtol=1e-6)
    np.testing.assert_allclose(float(acc), accuracy)


def _tiny(config, steps: int):
    config.total_steps = config.eval_every_steps = config.checkpoint_every_steps = steps
    config.batch_size, config.log_every_steps = 16, 1
    config.data.train_size = 400
    config.eval.update(num_examples=60, batch_size=60)
    config.model.text.update(width=32, depth=1, heads=2)
    config.model.embed_dim = 16
    config.text.vocab_size = 500
    config.optimizer.warmup_steps = 1
    return config


def test_heads_and_the_tied_mlm_head():
    config = _tiny(space2_config.get_config(), 1)
    model = build_model(config, 200)
    tokens = jnp.array([[2, 10, 11, 3, 0], [2, 12, 3, 0, 0]], jnp.int32)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), tokens)["params"]
    assert params["text_tower"]["token_embedding"]["embedding"].shape == (201, 32)  # the [MASK] row
    assert params["text_view_heads"]["kernel"].shape == (16, 10 * 16) and params["mlm_bias"].shape == (201,)
    views = model.apply({"params": params}, tokens, method=model.encode_text_views)["view_embedding"]
    np.testing.assert_allclose(np.linalg.norm(np.asarray(views), axis=-1), 1.0, rtol=1e-5)
    # Tied: the logits move with the token embedding, and the MLM loss's gradient reaches it.
    logits = model.apply({"params": params}, tokens, method=model.mlm_logits)
    assert logits.shape == (2, 5, 201)
    scaled = {**params, "mlm_bias": params["mlm_bias"] + 1.0}
    np.testing.assert_allclose(
        np.asarray(model.apply({"params": scaled}, tokens, method=model.mlm_logits)), np.asarray(logits) + 1.0,
        rtol=1e-5, atol=1e-5,
    )  # fmt: skip

    def mlm(p):
        out = model.apply({"params": p}, tokens, method=model.mlm_logits)
        return masked_lm.mlm_loss(out, jnp.array([[-1, 10, -1, -1, -1], [-1, 12, -1, -1, -1]]))[0]

    grad = jax.grad(mlm)(params)
    # Row 150 is neither an input nor a label: its gradient comes through the output layer, the tied embedding.
    assert float(jnp.abs(grad["text_tower"]["token_embedding"]["embedding"][150]).sum()) > 0
    shapes = [x.shape for x in jax.tree.leaves(params)]
    assert shapes.count((201, 32)) == 1 and (32, 201) not in shapes  # no output matrix of its own


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices")
def test_space2_steps_on_8_devices_equal_one_device():
    """The whole-batch scores, the dropout passes and the MLM masks do not depend on how the batch is split."""
    config = space2_config.get_config()
    config.model.text.update(width=32, depth=1, heads=2, max_len=10)
    config.model.image.update(width=32, depth=1, heads=2, patch_size=8)
    config.model.embed_dim, config.batch_size, config.optimizer.warmup_steps = 16, 16, 0
    config.mesh.min_shard_size = 256
    rng = np.random.default_rng(0)
    frames = [dialog_frames.command(0, "labelled", i)[1] for i in range(32)]
    batches = []
    for step in range(2):
        text = rng.integers(4, 64, size=(32, 10)).astype(np.int32)
        text[:, 0], text[:, 7], text[:, 8:] = 2, 3, 0
        ids = np.stack([dialog_frames.frame_item_ids(f) for f in frames[16 * step : 16 * step + 16]])
        batches.append({"text": text[:16], "unlabelled": text[16:], "frame": ids})
    ref_params, ref_metrics = run_steps(config, make_mesh({"data": 1}, jax.devices()[:1]), batches)
    params, metrics = run_steps(config, make_mesh({"data": 4, "fsdp": 2}), batches)
    for m, r in zip(metrics, ref_metrics, strict=True):
        keys = ["loss", "supervised", "self_supervised", "mlm"]
        np.testing.assert_allclose([m[k] for k in keys], [r[k] for k in keys], rtol=1e-5)
    assert_same_params(params, ref_params)


def test_validation_names_the_fix():
    config = _tiny(space2_config.get_config(), 1)
    config.space2.views = ("I", "X")
    with pytest.raises(ConfigError, match="config.space2.views"):
        validate_config(config)
    config = _tiny(space2_config.get_config(), 1)
    config.model.text.update(kind="clip", pool="last")
    with pytest.raises(ConfigError, match="config.model.text.kind='bert'"):
        validate_config(config)
    config = _tiny(space2_config.get_config(), 1)
    config.data.name = "shape_sentences"
    with pytest.raises(ConfigError, match="shape_commands"):
        validate_config(config)
    config = _tiny(space2_config.get_config(), 1)
    config.space2.mlm_probability = 1.5
    with pytest.raises(ConfigError, match="mlm_probability"):
        validate_config(config)


@pytest.mark.parametrize("supervision", ["soft", "hard", "none"])
def test_space2_trains_end_to_end(tmp_path, supervision):
    config = _tiny(space2_config.get_config(f"supervision={supervision}"), 3)
    validate_config(config)
    summary = train_and_evaluate(config, str(tmp_path))
    assert math.isfinite(summary["final_loss"])
    assert {"dialog/intent_probe", "dialog/slot_f1"} <= set(summary["eval"])
    rows = [json.loads(line) for line in open(summary["metrics"], encoding="utf-8")]
    train = [r for r in rows if "train/loss" in r]
    assert all(r["train/skipped"] == 0 for r in train)
    # The loss is its terms: supervised + self-supervised + 0.1 MLM (the MLM term the mean of the two batches').
    for r in train:
        expected = r["train/supervised"] + r["train/self_supervised"] + 0.1 * 2 * r["train/mlm"]
        np.testing.assert_allclose(r["train/loss"], expected, rtol=1e-4)
    assert dialog_frames.VIEWS == space2_config.VIEWS
