"""What the evaluation suite runs on: images in train/validation/test splits, class labels with
prompts, and optionally captions and hard negatives; plus the embedded shapes data in that form."""

from __future__ import annotations

import dataclasses

import numpy as np

from evaluation import binding_eval, prompts
from input_pipeline import shapes

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class LabelSet:
    """One labelling of a dataset's images: class names, zero-shot prompts [C][templates], labels per split."""

    class_names: tuple[str, ...]
    prompts: list[list[str]]
    labels: dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class EvalDataset:
    """`images`: split -> uint8 [N, H, W, 3]; `label_sets`: name -> LabelSet over the same images.

    `captions` (several per test image) enable retrieval; `hard_negatives` (one per
    type in `hard_negative_types`, per test image, false for it) enable the
    compositionality test and need `captions`, whose first entry is the positive; `binding` (held-out
    images with true and false captions, evaluation/binding_eval.py) enables the binding test.
    """

    name: str
    images: dict[str, np.ndarray]
    label_sets: dict[str, LabelSet]
    captions: list[list[str]] | None = None
    hard_negatives: list[tuple[str, ...]] | None = None
    hard_negative_types: tuple[str, ...] = ()
    binding: binding_eval.BindingSet | None = None

    def task_name(self, label: str) -> str:
        """`name/label` when the dataset has several labellings, else `name`."""
        return f"{self.name}/{label}" if len(self.label_sets) > 1 else self.name


def split_indices(n: int, fractions: tuple[float, float], seed: int) -> dict[str, np.ndarray]:
    """A seeded random split of range(n): `fractions` of it for train and validation, the rest test."""
    order = np.random.default_rng(seed).permutation(n)
    n_train, n_val = int(round(fractions[0] * n)), int(round(fractions[1] * n))
    return {
        "train": np.sort(order[:n_train]),
        "validation": np.sort(order[n_train : n_train + n_val]),
        "test": np.sort(order[n_train + n_val :]),
    }


def shapes_dataset(num_test: int, image_size: int, cache_dir: str | None = None) -> EvalDataset:
    """The shapes test split: images [0, num_test) are the test set (the trainer's eval images),
    [num_test, 2 num_test) validation and [2 num_test, 4 num_test) train, for probes; and the trainer's
    binding images, num_test // 2 per binding kind.

    The probes draw from the test split too because its images hold one object each,
    so every label names what is in the image; the model never trains on this split.
    """
    source = shapes.ShapesSource("test", 4 * num_test, seed=0, image_size=image_size, cache_dir=cache_dir)
    records = [source[i] for i in range(len(source))]
    ranges = {
        "test": range(0, num_test),
        "validation": range(num_test, 2 * num_test),
        "train": range(2 * num_test, 4 * num_test),
    }
    images = {s: np.stack([records[i]["image"] for i in r]) for s, r in ranges.items()}
    names = {
        "shape": shapes.SHAPES,
        "colour": shapes.COLOURS,
        "shape_colour": tuple(f"{c} {s}" for s in shapes.SHAPES for c in shapes.COLOURS),
    }
    class_prompts = prompts.class_prompts()
    label_sets = {
        label: LabelSet(
            class_names=names[label],
            prompts=class_prompts[label],
            labels={s: np.array([records[i][label] for i in r], np.int64) for s, r in ranges.items()},
        )
        for label in names
    }
    test = [records[i] for i in ranges["test"]]
    # COCO-style several captions per image: the alt-text plus its well-formed paraphrases.
    captions = [[r["caption"]] + [t for t in r["rewrites"] if len(t.split()) >= 2] for r in test]
    return EvalDataset(
        name="shapes",
        images=images,
        label_sets=label_sets,
        captions=captions,
        hard_negatives=[tuple(r["hard_negatives"]) for r in test],
        hard_negative_types=shapes.HARD_NEGATIVE_TYPES,
        binding=binding_eval.binding_set(binding_eval.trainer_examples_per_kind(num_test), image_size),
    )


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, H, W, 3] -> uint8 [N, size, size, 3], bilinear with antialiasing (Pillow)."""
    from PIL import Image

    if images.shape[1:3] == (size, size):
        return images
    resized = [np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BILINEAR)) for im in images]
    return np.stack(resized)


def to_rgb_uint8(images: np.ndarray) -> np.ndarray:
    """[N, H, W] or [N, H, W, 1|3] images, uint8 or floats in [0, 1], -> uint8 [N, H, W, 3]."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    if images.dtype != np.uint8:
        images = np.clip(np.round(images.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    return images
