"""ProtoCLIP: k-means, prototypical back translation, the soft-target loss and the episode state."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from contrastive_reference import float64, unit_rows

from configs.errors import ConfigError
from losses.protoclip import back_translate, init_extra, prototype_loss, spherical_kmeans, update_extra, validate


def _log_softmax(a):
    m = a.max(axis=1, keepdims=True)
    return a - m - np.log(np.exp(a - m).sum(axis=1, keepdims=True))


def test_spherical_kmeans_matches_lloyd_iterations_in_numpy():
    rng = np.random.default_rng(0)
    centres = unit_rows(rng.normal(size=(4, 6)))
    features = unit_rows(np.repeat(centres, 10, axis=0) + 0.3 * rng.normal(size=(40, 6)))
    key = jax.random.PRNGKey(3)
    start = np.asarray(jax.random.choice(key, 40, (4,), replace=False))
    centroids = features[start]
    for _ in range(5):
        labels = np.argmax(features @ centroids.T, axis=1)
        for k in range(4):
            if np.any(labels == k):
                total = features[labels == k].sum(0)
                centroids[k] = total / np.linalg.norm(total)
    labels = np.argmax(features @ centroids.T, axis=1)
    with float64():
        got_labels, got_centroids, counts = spherical_kmeans(jnp.asarray(features), 4, key, iterations=5)
    assert np.asarray(got_labels).tolist() == labels.tolist()
    np.testing.assert_allclose(np.asarray(got_centroids), centroids, atol=1e-6)  # l2_normalize's eps 1e-6
    assert np.asarray(counts).tolist() == np.bincount(labels, minlength=4).tolist()


def test_back_translation_is_the_normalised_mean_of_the_other_modality():
    rng = np.random.default_rng(1)
    image = unit_rows(rng.normal(size=(9, 5)))
    text_labels = np.array([0, 2, 2, 0, 2, 0, 0, 2, 2])  # cluster 1 and 3 are empty
    expected = np.zeros((4, 5))
    for k in (0, 2):
        mean = image[text_labels == k].mean(0)
        expected[k] = mean / np.linalg.norm(mean)
    with float64():
        got = back_translate(jnp.asarray(image), jnp.asarray(text_labels), 4)
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-6)


@pytest.mark.parametrize("target_temperature", [0.01, 0.5, 0.0])
def test_prototype_loss_matches_soft_target_cross_entropy(target_temperature):
    rng = np.random.default_rng(2)
    student = unit_rows(rng.normal(size=(6, 4)))
    translated = unit_rows(rng.normal(size=(5, 4)))
    teacher = unit_rows(rng.normal(size=(5, 4)))
    labels = np.array([0, 1, 3, 3, 4, 0])
    valid = np.array([True, True, False, True, True])  # cluster 2 came out empty
    scale = 20.0
    logits = scale * student @ translated[valid].T
    if target_temperature > 0:
        targets = np.exp(_log_softmax(teacher[labels] @ teacher[valid].T / target_temperature))
    else:
        targets = np.eye(5)[labels][:, valid]
    expected = -np.mean(np.sum(targets * _log_softmax(logits), axis=1))
    with float64():
        got = prototype_loss(
            jnp.asarray(student), jnp.asarray(translated), jnp.asarray(teacher), jnp.asarray(labels),
            jnp.asarray(valid), jnp.float64(scale), target_temperature,
        )  # fmt: skip
    assert float(got) == pytest.approx(expected, rel=1e-10)


def test_episode_fills_the_bank_then_clusters():
    config = ml_collections.ConfigDict(
        dict(batch_size=4, model=dict(head_dim=3), protoclip=dict(episode_steps=3, num_prototypes=2))
    )
    extra = init_extra(None, config)
    rng = np.random.default_rng(4)
    batches = [unit_rows(rng.normal(size=(4, 3))).astype(np.float32) for _ in range(3)]
    for b in batches:
        assert float(extra["ready"]) == 0.0
        extra = update_extra(extra, None, {"image": jnp.asarray(b), "text": jnp.asarray(-b)})
    np.testing.assert_array_equal(np.asarray(extra["image_bank"]), np.concatenate(batches))
    assert float(extra["ready"]) == 1.0 and int(extra["step"]) == 3
    # Text = -image, so each text cluster's image-space centroid is minus its own centroid.
    bank = np.concatenate(batches)
    text_labels = np.argmax(-bank @ np.asarray(extra["text_centroids"]).T, axis=1)
    for k in range(2):
        mean = bank[text_labels == k].mean(0)
        np.testing.assert_allclose(np.asarray(extra["image_from_text"])[k], mean / np.linalg.norm(mean), atol=1e-5)
    # The next episode overwrites the bank from its first row.
    extra = update_extra(extra, None, {"image": jnp.zeros((4, 3)), "text": jnp.zeros((4, 3))})
    assert np.all(np.asarray(extra["image_bank"])[:4] == 0) and np.any(np.asarray(extra["image_bank"])[4:] != 0)


def test_too_many_prototypes_for_the_episode_is_a_clear_error():
    config = ml_collections.ConfigDict(
        dict(batch_size=4, model=dict(head_dim=3), protoclip=dict(episode_steps=2, num_prototypes=9))
    )
    with pytest.raises(ConfigError, match="raise config.protoclip.episode_steps"):
        validate(config)
