"""The evaluation datasets: shapes in eval form, scikit-learn's digits, and a user's .npz file or folder."""

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from configs.errors import ConfigError
from evaluation.digits import digits_dataset
from evaluation.eval_data import shapes_dataset
from evaluation.user_files import user_dataset
from input_pipeline import shapes


def test_shapes_test_images_are_the_trainers_eval_images():
    data = shapes_dataset(num_test=6, image_size=16)
    assert {k: len(v) for k, v in data.images.items()} == {"test": 6, "validation": 6, "train": 12}
    for i in (0, 5):
        example = shapes.make_example(0, "test", i, 16)
        np.testing.assert_array_equal(data.images["test"][i], example["image"])
        assert data.label_sets["shape_colour"].labels["test"][i] == example["shape_colour"]
        assert data.captions[i][0] == example["caption"] and len(data.captions[i]) >= 2
        assert data.hard_negatives[i] == example["hard_negatives"]
    np.testing.assert_array_equal(data.images["train"][0], shapes.make_example(0, "test", 12, 16)["image"])
    name = data.label_sets["shape_colour"].class_names[3 * 8 + 5]
    assert name == f"{shapes.COLOURS[5]} {shapes.SHAPES[3]}" and data.task_name("shape") == "shapes/shape"


def test_digits_are_the_real_scans_with_digit_prompts():
    data = digits_dataset(image_size=16)
    label_set = data.label_sets["digit"]
    assert {k: len(v) for k, v in data.images.items()} == {"train": 898, "validation": 359, "test": 540}
    assert data.images["test"].shape[1:] == (16, 16, 3) and data.images["test"].dtype == np.uint8
    assert label_set.prompts[3][0] == "a photo of the digit 3." and data.task_name("digit") == "digits"
    # Every scan is used once: the class counts of the three splits add up to scikit-learn's.
    counts = np.bincount(np.concatenate(list(label_set.labels.values())), minlength=10)
    np.testing.assert_array_equal(counts, np.bincount(load_digits().target, minlength=10))
    assert data.images["train"].min() < 60 and np.median(data.images["train"]) > 200  # dark ink on white


def test_user_npz_with_captions_and_class_names(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(20, 12, 12, 3), dtype=np.uint8)
    labels = np.arange(20) % 3
    path = tmp_path / "cats.npz"
    np.savez(path, images=images, labels=labels, class_names=np.array(["tabby_cat", "dog", "fox"]),
             captions=np.array([f"caption {i}" for i in range(20)]))  # fmt: skip
    data = user_dataset(str(path), image_size=8)
    label_set = data.label_sets["label"]
    assert data.name == "cats" and label_set.prompts[0][0] == "a photo of a tabby cat."
    assert {k: len(v) for k, v in data.images.items()} == {"train": 10, "validation": 4, "test": 6}
    assert data.images["test"].shape == (6, 8, 8, 3)
    # Test captions follow their images: caption i belongs to image i of the file.
    test_index = [int(c[0].split()[1]) for c in data.captions]
    np.testing.assert_array_equal(label_set.labels["test"], labels[test_index])


def test_user_folder_of_class_folders(tmp_path):
    for name, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i, side in enumerate((10, 14, 10)):  # mixed sizes are fine
            Image.new("RGB", (side, side), colour).save(tmp_path / "data" / name / f"{i}.png")
    (tmp_path / "data" / "red" / "notes.txt").write_text("not an image")
    data = user_dataset(str(tmp_path / "data"), image_size=4)
    label_set = data.label_sets["label"]
    assert label_set.class_names == ("blue", "red") and data.name == "data"
    every = np.concatenate([data.images[s] for s in ("train", "validation", "test")])
    labels = np.concatenate([label_set.labels[s] for s in ("train", "validation", "test")])
    assert len(every) == 6 and every.shape[1:] == (4, 4, 3)
    np.testing.assert_array_equal(every[labels == 1][:, 0, 0], np.tile([255, 0, 0], (3, 1)))


@pytest.mark.parametrize(
    "content, message",
    [(None, "is neither an .npz file nor a folder"), ({"images": np.zeros((2, 4, 4, 3))}, "has no labels array")],
)
def test_user_data_errors_are_one_sentence(tmp_path, content, message):
    path = tmp_path / "bad.npz"
    if content is not None:
        np.savez(path, **content)
    with pytest.raises(ConfigError, match=message):
        user_dataset(str(path), image_size=8)
