"""ALIP: gates, EMA means and the adaptive weighted bi-path loss against a NumPy float64 reference."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from contrastive_reference import float64, unit_rows

from losses.alip import alip_fields, alip_loss_from_embeddings, per_example_clip_loss


def _lse(a, axis):
    m = a.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def reference(image, raw, caption, scale, means, momentum, power, clip_pairs, raw_weight=1.0):
    """Per-example loops, written from the paper's equations (METHODS.md 4); raw_weight scales the raw path."""
    s_t = np.array([r @ c for r, c in zip(raw, caption, strict=True)])
    s_it = np.array([f @ r for f, r in zip(image, raw, strict=True)])
    s_ic = np.array([f @ c for f, c in zip(image, caption, strict=True)])
    new = {
        "text": momentum * means["text"] + (1 - momentum) * s_t.mean(),
        "image_raw": momentum * means["image_raw"] + (1 - momentum) * s_it.mean(),
        "image_caption": momentum * means["image_caption"] + (1 - momentum) * s_ic.mean(),
    }
    total = 0.0
    for texts, s, key, path_weight in ((raw, s_it, "image_raw", raw_weight), (caption, s_ic, "image_caption", 1.0)):
        logits = scale * image @ texts.T
        for i in range(len(image)):
            w_s = min(np.exp(power * (s_t[i] - new["text"])), 1.0)
            w_pair = np.exp(power * (s[i] - new[key])) if w_s < 1 else 1.0
            if clip_pairs:
                w_pair = min(w_pair, 1.0)
            ce_row = _lse(logits[i], 0) - logits[i, i]
            ce_col = _lse(logits[:, i], 0) - logits[i, i]
            total += path_weight * w_s * w_pair * 0.5 * (ce_row + ce_col) / len(image)
    return total, new


@pytest.mark.parametrize("clip_pairs, raw_weight", [(False, 1.0), (True, 1.0), (False, 0.0), (False, 0.3)])
def test_alip_loss_matches_reference(clip_pairs, raw_weight):
    rng = np.random.default_rng(0)
    image = unit_rows(rng.normal(size=(8, 6)))
    caption = unit_rows(image + 0.5 * rng.normal(size=(8, 6)))
    raw = unit_rows(caption + rng.uniform(0.1, 2.0, size=(8, 1)) * rng.normal(size=(8, 6)))  # graded noise
    means = {"text": 0.6, "image_raw": 0.3, "image_caption": 0.4}
    expected, expected_means = reference(image, raw, caption, 12.0, means, 0.9, 2.0, clip_pairs, raw_weight)
    with float64():
        loss, metrics, new_means = alip_loss_from_embeddings(
            jnp.asarray(image),
            jnp.asarray(raw),
            jnp.asarray(caption),
            jnp.float64(12.0),
            {k: jnp.float64(v) for k, v in means.items()},
            momentum=0.9,
            gate_power=2.0,
            clip_pair_weights=clip_pairs,
            raw_caption_weight=raw_weight,
        )
    assert float(loss) == pytest.approx(expected, rel=1e-10)
    for key, value in expected_means.items():
        assert float(new_means[key]) == pytest.approx(value, rel=1e-12)
    assert 0.0 < float(metrics["gated_fraction"]) < 1.0  # the test exercises both branches of the gate


def test_unclipped_pair_weights_exceed_one_by_default():
    """The documented choice (official code): a gated pair that beats the mean similarity is up-weighted,
    so the default loss is larger than with pair weights clipped at 1."""
    rng = np.random.default_rng(3)
    image = unit_rows(rng.normal(size=(6, 4)))
    caption = unit_rows(image + 0.1 * rng.normal(size=(6, 4)))
    raw = unit_rows(rng.normal(size=(6, 4)))
    means = {"text": jnp.float32(0.99), "image_raw": jnp.float32(-0.5), "image_caption": jnp.float32(-0.5)}
    args = (jnp.asarray(image), jnp.asarray(raw), jnp.asarray(caption), jnp.float32(10.0), means)
    unclipped, _, _ = alip_loss_from_embeddings(*args, momentum=0.99, gate_power=2.0, clip_pair_weights=False)
    clipped, _, _ = alip_loss_from_embeddings(*args, momentum=0.99, gate_power=2.0, clip_pair_weights=True)
    assert float(unclipped) > float(clipped) * 1.5


def test_per_example_loss_averages_to_the_clip_loss():
    rng = np.random.default_rng(1)
    image, text = unit_rows(rng.normal(size=(5, 3))), unit_rows(rng.normal(size=(5, 3)))
    logits = 7.0 * image @ text.T
    clip = 0.5 * (np.mean(_lse(logits, 1) - np.diag(logits)) + np.mean(_lse(logits, 0) - np.diag(logits)))
    with float64():
        mean = jnp.mean(per_example_clip_loss(jnp.asarray(image), jnp.asarray(text), jnp.float64(7.0)))
    assert float(mean) == pytest.approx(clip, rel=1e-12)


def test_fields_tokenize_the_raw_caption():
    record = {"raw_caption": "red circle banana", "caption": "red circle"}
    fields = alip_fields(record, np.random.default_rng(0), lambda texts: np.array([[len(texts[0])]]))
    assert fields["raw_text"].tolist() == [len("red circle banana")]
