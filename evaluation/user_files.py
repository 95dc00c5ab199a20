"""A user's own labelled images as an evaluation dataset: an .npz file or a folder of class folders.

- `name.npz` with `images` (uint8 [N, H, W, 3] or [N, H, W], or floats in [0, 1]) and
  `labels` ([N] ints); optional `class_names` ([C] strings) and `captions` ([N] strings,
  which enable retrieval).
- a folder `name/` with one sub-folder of images (.png, .jpg, .jpeg, .bmp, .gif) per class,
  the sub-folder names being the class names (torchvision's ImageFolder layout).
"""

from __future__ import annotations

import os

import numpy as np

from configs.errors import ConfigError
from evaluation.eval_data import EvalDataset, LabelSet, resize_images, split_indices, to_rgb_uint8

GENERIC_TEMPLATES = (
    "a photo of a {}.",
    "an image of a {}.",
    "a picture of the {}.",
    "a close-up photo of a {}.",
)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def _read_npz(path: str) -> tuple[np.ndarray, np.ndarray, list[str] | None, list[str] | None]:
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in ("images", "labels") if k not in data]
        if missing:
            raise ConfigError(
                f"{path} has no {' or '.join(missing)} array; save it with np.savez(path, images=..., labels=...)."
            )
        class_names = [str(c) for c in data["class_names"]] if "class_names" in data else None
        captions = [str(c) for c in data["captions"]] if "captions" in data else None
        return to_rgb_uint8(data["images"]), data["labels"].astype(np.int64), class_names, captions


def _read_folder(path: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from PIL import Image

    class_names = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    images, labels = [], []
    for label, name in enumerate(class_names):
        for file in sorted(os.listdir(os.path.join(path, name))):
            if file.lower().endswith(IMAGE_EXTENSIONS):
                with Image.open(os.path.join(path, name, file)) as im:
                    images.append(np.asarray(im.convert("RGB")))
                labels.append(label)
    if not images:
        raise ConfigError(
            f"{path} holds no images in class sub-folders; lay it out as {path}/<class name>/<image>.png."
        )
    if len({im.shape for im in images}) > 1:  # mixed sizes: bring them to one before stacking
        side = max(max(im.shape[:2]) for im in images)
        images = [resize_images(im[None], side)[0] for im in images]
    return np.stack(images), np.array(labels, np.int64), class_names


def user_dataset(path: str, image_size: int, seed: int = 0) -> EvalDataset:
    """The images at `path` resized to [image_size, image_size, 3], split 50/20/30 train/validation/test."""
    if path.endswith(".npz") and os.path.isfile(path):
        images, labels, class_names, captions = _read_npz(path)
    elif os.path.isdir(path):
        (images, labels, class_names), captions = _read_folder(path), None
    else:
        raise ConfigError(f"Evaluation data {path!r} is neither an .npz file nor a folder; fix the --eval_data path.")
    if len(images) != len(labels) or (captions is not None and len(captions) != len(labels)):
        raise ConfigError(f"{path} has {len(images)} images but a different number of labels or captions; fix it.")
    num_classes = int(labels.max()) + 1
    class_names = class_names or [str(c) for c in range(num_classes)]
    if len(class_names) < num_classes:
        raise ConfigError(f"{path} has labels up to {num_classes - 1} but only {len(class_names)} class_names.")
    index = split_indices(len(labels), (0.5, 0.2), seed)
    readable = [c.replace("_", " ") for c in class_names]
    label_set = LabelSet(
        class_names=tuple(class_names),
        prompts=[[t.format(c) for t in GENERIC_TEMPLATES] for c in readable],
        labels={split: labels[i] for split, i in index.items()},
    )
    images = resize_images(images, image_size)
    name = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
    return EvalDataset(
        name=name,
        images={split: images[i] for split, i in index.items()},
        label_sets={"label": label_set},
        captions=None if captions is None else [[captions[i]] for i in index["test"]],
    )
