"""scikit-learn's bundled handwritten digits (1,797 real 8x8 scans) as an evaluation dataset, no download."""

from __future__ import annotations

import numpy as np

from evaluation.eval_data import EvalDataset, LabelSet, resize_images, split_indices, to_rgb_uint8

DIGIT_TEMPLATES = (
    "a photo of the digit {}.",
    "an image of the number {}.",
    "a picture of a handwritten {}.",
    "a scan of the digit {}.",
)


def digits_dataset(image_size: int, seed: int = 0) -> EvalDataset:
    """Dark ink on white, upsampled to [image_size, image_size, 3]; a seeded 50/20/30 train/validation/test split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    ink = digits.images / 16.0  # scans are 0..16, high where the pen wrote
    images = resize_images(to_rgb_uint8(1.0 - ink), image_size)
    labels = digits.target.astype(np.int64)
    index = split_indices(len(labels), (0.5, 0.2), seed)
    names = tuple(str(d) for d in range(10))
    label_set = LabelSet(
        class_names=names,
        prompts=[[t.format(d) for t in DIGIT_TEMPLATES] for d in names],
        labels={split: labels[i] for split, i in index.items()},
    )
    return EvalDataset(
        name="digits", images={split: images[i] for split, i in index.items()}, label_sets={"digit": label_set}
    )
