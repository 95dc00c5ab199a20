"""DreamLIP: sub-caption sampling, the multi-positive losses and the grouping loss against NumPy float64."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from contrastive_reference import float64, unit_rows

from losses.dreamlip import (
    circle_loss,
    grouped_patch_embeddings,
    multipositive_infonce,
    sample_subcaptions,
    sgl_loss,
    split_sentences,
)


def _lse(a):
    a = np.asarray(a)
    return a.max() + np.log(np.exp(a - a.max()).sum())


def _unit(a):
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def _embeddings(seed=0, batch=4, m=3, patches=5, dim=6):
    rng = np.random.default_rng(seed)
    image = unit_rows(rng.normal(size=(batch, dim)))
    subcaptions = _unit(image[:, None] + 0.7 * rng.normal(size=(batch, m, dim)))
    patch = _unit(rng.normal(size=(batch, patches, dim)))
    return image, subcaptions, patch


def test_split_and_sample_subcaptions():
    caption = "The picture contains 2 objects.\nThere is a red circle at the top. There is a blue star</s>"
    assert split_sentences(caption) == [
        "The picture contains 2 objects",
        "There is a red circle at the top",
        "There is a blue star",
    ]
    rng = np.random.default_rng(0)
    drawn = [sample_subcaptions(caption, rng, num=3) for _ in range(20)]
    assert all(sorted(d) == sorted(split_sentences(caption)) for d in drawn)  # without replacement: all three
    assert len({tuple(d) for d in drawn}) > 1  # in a fresh order
    short = sample_subcaptions("Only one sentence.", rng, num=3)
    assert short == ["Only one sentence"] * 3  # with replacement when the pool is smaller
    with pytest.raises(ValueError, match="non-empty"):
        sample_subcaptions(" . ", rng)


def test_multipositive_infonce_matches_reference():
    image, subcaptions, _ = _embeddings()
    batch, m, dim = subcaptions.shape
    scale = 9.0
    flat = subcaptions.reshape(batch * m, dim)
    expected = np.mean(
        [
            -np.mean([scale * image[i] @ subcaptions[i, p] - _lse(scale * flat @ image[i]) for p in range(m)])
            for i in range(batch)
        ]
    )
    with float64():
        loss = multipositive_infonce(jnp.asarray(image), jnp.asarray(subcaptions), jnp.float64(scale))
    assert float(loss) == pytest.approx(expected, rel=1e-12)


def test_circle_loss_matches_the_official_formula():
    """The code path (multipos="circle"): pairwise circle loss, gamma 32, m 0.25, divided by 10."""
    image, subcaptions, _ = _embeddings(seed=1)
    batch, m, _ = subcaptions.shape
    gamma, margin = 32.0, 0.25
    per_image = []
    for i in range(batch):
        sp = [image[i] @ subcaptions[i, p] for p in range(m)]
        sn = [image[i] @ subcaptions[j, p] for j in range(batch) if j != i for p in range(m)]
        lp = [-gamma * max(1 + margin - s, 0) * (s - (1 - margin)) for s in sp]
        ln = [gamma * max(s + margin, 0) * (s - margin) for s in sn]
        per_image.append(np.log1p(np.exp(_lse(lp) + _lse(ln))))
    with float64():
        loss = circle_loss(jnp.asarray(image), jnp.asarray(subcaptions), gamma=gamma, margin=margin)
    assert float(loss) == pytest.approx(np.mean(per_image) / 10, rel=1e-10)


@pytest.mark.parametrize("threshold", [0.0, 0.5, -1.0])
def test_grouped_patch_embeddings_match_reference(threshold):
    _, subcaptions, patches = _embeddings(seed=2)
    batch, m, dim = subcaptions.shape
    expected = np.zeros_like(subcaptions)
    sigma = 1.0 / patches.shape[1] if threshold < 0 else threshold
    for b in range(batch):
        for t in range(m):
            sim = patches[b] @ subcaptions[b, t]
            a = (sim - sim.min()) / (sim.max() - sim.min())
            a[a < sigma] = 0.0
            expected[b, t] = _unit((a / a.sum()) @ patches[b])
    with float64():
        grouped = grouped_patch_embeddings(jnp.asarray(subcaptions), jnp.asarray(patches), threshold)
    np.testing.assert_allclose(np.asarray(grouped), expected, atol=1e-5)  # the code's eps 1e-6 in two denominators


def test_sgl_loss_is_symmetric_infonce_over_grouped_embeddings():
    _, subcaptions, patches = _embeddings(seed=3)
    with float64():
        grouped = np.asarray(grouped_patch_embeddings(jnp.asarray(subcaptions), jnp.asarray(patches), 0.0))
        loss = sgl_loss(jnp.asarray(subcaptions), jnp.asarray(patches), jnp.float64(np.log(10.0)), 0.0)
    u, t = grouped.reshape(-1, grouped.shape[-1]), subcaptions.reshape(-1, subcaptions.shape[-1])
    logits = 10.0 * u @ t.T
    rows = np.mean([_lse(logits[i]) - logits[i, i] for i in range(len(u))])
    cols = np.mean([_lse(logits[:, i]) - logits[i, i] for i in range(len(u))])
    assert float(loss) == pytest.approx(0.5 * (rows + cols), rel=1e-12)
