import numpy as np
import pytest

from evaluation import retrieval, zero_shot


def test_recall_at_k_hand_checked_with_ties():
    similarity = np.array(
        [
            [0.9, 0.1, 0.0],  # match ranks first
            [0.5, 0.2, 0.5],  # two candidates above the match: third
            [0.3, 0.3, 0.3],  # all tied: the match is first, second or third with probability 1/3 each
        ]
    )
    recalls = retrieval.recall_at_k(similarity, np.eye(3, dtype=bool), ks=(1, 2, 3))
    assert recalls == pytest.approx({1: (1 + 0 + 1 / 3) / 3, 2: (1 + 0 + 2 / 3) / 3, 3: 1.0})


def test_retrieval_metrics_both_directions():
    images = np.eye(3)
    texts = np.array([[1.0, 0, 0], [1.0, 0, 0], [0, 0, 1.0]])  # caption 1 describes image 0
    m = retrieval.retrieval_metrics(images, texts, prefix="r/")
    # Image 0 ties between captions 0 (its own) and 1; image 1 scores 0 against all three captions.
    assert m["r/image_to_text_R@1"] == pytest.approx((1 / 2 + 1 / 3 + 1) / 3)
    # Caption 1 scores 1 with image 0 and 0 with its own image: missed at R@1, found at R@5.
    assert m["r/text_to_image_R@1"] == pytest.approx(2 / 3) and m["r/text_to_image_R@5"] == 1.0


def test_zero_shot_ensemble_and_accuracy():
    prompts = np.array([[[1.0, 0.0], [0.6, 0.8]], [[0.0, 1.0], [0.0, 1.0]]])
    classes = zero_shot.class_embeddings(prompts)
    np.testing.assert_allclose(classes[0], np.array([1.6, 0.8]) / np.linalg.norm([1.6, 0.8]))
    images = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    assert zero_shot.zero_shot_accuracy(images, classes, np.array([0, 1, 1])) == 2 / 3
