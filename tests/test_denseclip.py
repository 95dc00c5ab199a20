"""DenseCLIP: the shapes masks agree with the rendered pixels, the loss equals a float64 NumPy recomputation, mIoU
is right on perfect, constant and hand-built predictors, bad options are refused in one sentence, and a run trains
end to end and prints its mIoU beside chance and the plain CLIP baseline."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_training import tiny_config

from configs import denseclip as denseclip_config
from evaluation.segmentation_eval import mean_iou
from input_pipeline import segmentation, shapes
from losses import denseclip
from training.loop import train_and_evaluate
from training.validation import ConfigError, validate_config


def _saturation(image: np.ndarray) -> np.ndarray:
    image = image.astype(np.int32)
    return image.max(-1) - image.min(-1)


def _grow(mask: np.ndarray, outside: bool = False) -> np.ndarray:
    """The mask and the 8 neighbours of its pixels, the pixels beyond the image taken as `outside`."""
    padded = np.pad(mask, 1, constant_values=outside)
    side = mask.shape[0]
    return np.any([padded[i : i + side, j : j + side] for i in range(3) for j in range(3)], axis=0)


@pytest.mark.parametrize("image_size", [32, 48])
def test_masks_agree_with_the_rendered_pixels(image_size):
    """Found without the renderer: the pixels of an object's mask are its colour (interior) or saturated (edge),
    the pixels away from every mask are grey, and each mask fills exactly its object's box."""
    for index in range(40):
        e = shapes.make_example(0, "train", index, image_size)
        mask, count, saturation = e["object_mask"], int(e["num_objects"]), _saturation(e["image"])
        assert mask.shape == (image_size, image_size) and mask.dtype == np.uint8 and mask.max() <= count
        assert np.all(saturation[~_grow(mask > 0)] <= 45), index  # the background is grey
        for k in range(count):
            inside = mask == k + 1
            colour = shapes.COLOUR_RGB[e["object_labels"][k] % len(shapes.COLOURS)]
            interior = inside & ~_grow(~inside, outside=True)  # whole pixels of the object
            distance = np.linalg.norm(e["image"][interior].astype(np.float32) - colour, axis=-1)
            assert np.all(distance < 70), (index, k)  # the colour, jittered (sd 12 per channel) and noisy
            assert np.mean(saturation[inside] >= 40) >= 0.95, (index, k)  # edge pixels: at least half the colour
            rows, cols = np.nonzero(inside)
            bounds = np.array([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]) / image_size
            np.testing.assert_allclose(bounds, e["boxes"][k], atol=1e-6)  # objects never overlap: box = mask bounds
            size, colour_word, shape_word = e["region_captions"][k].split()
            sc = e["object_labels"][k]
            assert (shapes.SHAPES[sc // len(shapes.COLOURS)], shapes.COLOURS[sc % len(shapes.COLOURS)]) == (
                shape_word,
                colour_word,
            )
        assert np.all(e["object_labels"][count:] == -1)


def test_segmentation_maps_follow_the_class_names():
    e = shapes.make_example(0, "train", 3, 32)
    names = tuple(reversed(segmentation.CLASS_SETS["shape"]))  # any order
    labels = segmentation.segmentation_map(e, segmentation.shapes_class_table(names))
    background = names.index("background")
    assert np.array_equal(labels == background, e["object_mask"] == 0)
    for k in range(int(e["num_objects"])):
        shape = shapes.SHAPES[e["object_labels"][k] // len(shapes.COLOURS)]
        assert np.all(labels[e["object_mask"] == k + 1] == names.index(shape))
    pairs = segmentation.CLASS_SETS["shape_colour"]
    by_pair = segmentation.segmentation_map(e, segmentation.shapes_class_table(pairs))
    assert set(np.unique(by_pair)) == {0, *(1 + e["object_labels"][: int(e["num_objects"])])}


def _upsample(x: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear [B, h, w, C] -> [B, height, width, C] pixel by pixel (float64): output pixel (i, j) samples the
    input at ((i + 1/2) h / height - 1/2, ...), clamped into the image, from its 4 neighbours."""
    out = np.zeros((x.shape[0], height, width, x.shape[-1]))
    for i in range(height):
        for j in range(width):
            y = min(max((i + 0.5) * x.shape[1] / height - 0.5, 0.0), x.shape[1] - 1)
            z = min(max((j + 0.5) * x.shape[2] / width - 0.5, 0.0), x.shape[2] - 1)
            y0, z0 = int(y), int(z)
            y1, z1 = min(y0 + 1, x.shape[1] - 1), min(z0 + 1, x.shape[2] - 1)
            dy, dz = y - y0, z - z0
            out[:, i, j] = (
                (1 - dy) * (1 - dz) * x[:, y0, z0] + (1 - dy) * dz * x[:, y0, z1]
                + dy * (1 - dz) * x[:, y1, z0] + dy * dz * x[:, y1, z1]
            )  # fmt: skip
    return out


def _cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    logits = _upsample(logits, *labels.shape[1:])
    valid = labels != segmentation.IGNORE
    z = logits[valid]
    log_p = z - z.max(-1, keepdims=True) - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True))
    return float(-np.mean(log_p[np.arange(len(z)), labels[valid]]))


def _infonce(x: np.ndarray, y: np.ndarray, scale: float) -> float:
    logits = scale * x @ y.T
    lse = lambda a: np.log(np.exp(a - a.max(1, keepdims=True)).sum(1)) + a.max(1)  # noqa: E731
    return float(np.mean(lse(logits) - np.diag(logits)) / 2 + np.mean(lse(logits.T) - np.diag(logits)) / 2)


@pytest.mark.parametrize("clip_weight", [0.0, 0.5])
def test_denseclip_loss_is_seg_ce_plus_weighted_pixel_text_ce(clip_weight):
    rng = np.random.default_rng(0)
    batch, classes, side, dim = 3, 5, 12, 6
    labels = rng.integers(0, classes, (batch, side, side))
    labels[rng.random(labels.shape) < 0.2] = segmentation.IGNORE
    unit = lambda *shape: (lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True))(rng.normal(size=shape))  # noqa: E731
    embeddings = {
        "seg_logits": rng.normal(size=(batch, 6, 6, classes)),
        "score_map": rng.uniform(-1, 1, (batch, 3, 3, classes)),
        "image_embedding": unit(batch, dim),
        "text_embedding": unit(batch, dim),
    }
    config = denseclip_config.get_config()
    config.denseclip.update(aux_weight=0.4, temperature=0.07, clip_weight=clip_weight)
    model = types.SimpleNamespace(apply=lambda variables, *args, **kw: {"logit_scale": variables["params"]["s"]})
    with jax.enable_x64(True):
        loss, metrics = denseclip.loss_from_embeddings(
            {"s": jnp.float64(np.log(9.0))}, jax.tree.map(jnp.asarray, embeddings), {"segmentation": labels}, {},
            None, model=model, config=config,
        )  # fmt: skip
    seg = _cross_entropy(embeddings["seg_logits"], labels)
    aux = _cross_entropy(embeddings["score_map"] / 0.07, labels)
    clip = _infonce(embeddings["image_embedding"], embeddings["text_embedding"], 9.0)
    np.testing.assert_allclose(metrics["seg_loss"], seg, rtol=1e-10)
    np.testing.assert_allclose(metrics["aux_loss"], aux, rtol=1e-10)
    np.testing.assert_allclose(loss, seg + 0.4 * aux + clip_weight * clip, rtol=1e-10)


def test_mean_iou_of_perfect_constant_and_hand_built_predictors():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 4, (6, 10, 10))
    labels[0, 0, :5] = segmentation.IGNORE
    assert mean_iou(labels, labels, 4) == 1.0
    # Everything background (class 0): IoU_0 = background pixels / labelled pixels, the 3 other classes 0.
    labelled = labels != segmentation.IGNORE
    constant = mean_iou(np.zeros_like(labels), labels, 4)
    np.testing.assert_allclose(constant, np.sum(labels == 0) / np.sum(labelled) / 4, rtol=1e-12)
    # By hand: truth [[0, 0], [1, 1]], prediction [[0, 1], [1, 1]]: IoU_0 = 1/2, IoU_1 = 2/3, class 2 absent.
    truth, predicted = np.array([[0, 0], [1, 1]]), np.array([[0, 1], [1, 1]])
    assert mean_iou(predicted, truth, 3) == pytest.approx((1 / 2 + 2 / 3) / 2)
    # The ignored pixel (predicted 2) counts for nothing: IoU_0 = 1/3 (one of 0 and 0's three), IoU_1 = 2/4.
    truth = np.array([[0, 0, segmentation.IGNORE], [1, 1, 1]])
    predicted = np.array([[0, 1, 2], [1, 1, 0]])
    assert mean_iou(predicted, truth, 3) == pytest.approx((1 / 3 + 1 / 2) / 2)
    random = mean_iou(rng.integers(0, 4, (50, 20, 20)), rng.integers(0, 4, (50, 20, 20)), 4)
    assert random == pytest.approx(1 / 7, abs=0.01)  # uniform over 4: |A n B| / |A u B| = (1/16) / (7/16)


BAD_OPTIONS = [
    ("prompting", "mid", r"Unknown config.denseclip.prompting 'mid'; use one of \['none', 'post', 'pre'\]"),
    ("context_tokens", 31, r"context_tokens \(31\) leaves 1 of config.model.text.max_len \(32\)"),
    ("decoder_heads", 3, r"decoder_width \(64\) is not divisible by config.denseclip.decoder_heads \(3\)"),
    ("aux_weight", -0.4, r"config.denseclip.aux_weight must be at least 0, not -0.4"),
    ("temperature", 0.0, r"config.denseclip.temperature must be positive, not 0.0"),
    ("class_names", ("background", "circle"), r"class_names must be the names of one of the shapes class sets"),
    ("class_names", ("circle", "circle"), r"class_names must hold at least 2 distinct names"),
]


@pytest.mark.parametrize("key, value, message", BAD_OPTIONS, ids=[f"{k}={v}" for k, v, _ in BAD_OPTIONS])
def test_bad_options_are_refused_before_jax_starts(key, value, message):
    config = denseclip_config.get_config()
    validate_config(config)
    config.denseclip[key] = value
    with pytest.raises(ConfigError, match=message) as error:
        validate_config(config)
    assert "\n" not in str(error.value) and str(error.value).endswith(".")


def test_a_random_crop_is_refused():
    config = denseclip_config.get_config()
    config.data.crop_scale = (0.5, 1.0)
    with pytest.raises(ConfigError, match=r"set config.data.crop_scale=\(1.0, 1.0\)"):
        validate_config(config)
    with pytest.raises(ValueError, match="Unknown DenseCLIP variant 'best'"):
        denseclip_config.get_config("variant=best")


def test_denseclip_trains_and_prints_miou_beside_chance_and_the_baseline(tmp_path, capsys):
    config = tiny_config(total_steps=4, batch_size=16, log_every_steps=2, eval_every_steps=4,
                         checkpoint_every_steps=4)  # fmt: skip
    method = denseclip_config.get_config()
    config.update(objective="denseclip", denseclip=method.denseclip, evals=method.evals)
    config.denseclip.update(context_tokens=3, decoder_width=16, head_width=16)
    config.model.image.conv_stem_depth = 1  # the head's FPN reads the stem's stage
    config.optimizer.frozen_prefixes = ("image_tower",)
    config.data.update(train_size=32, cache_dir="")
    config.eval.update(num_examples=16, batch_size=16)
    validate_config(config)
    summary = train_and_evaluate(config, str(tmp_path))
    e = summary["eval"]
    assert summary["step"] == 4 and np.isfinite(summary["final_loss"])
    for key in ("miou", "score_miou", "clip_miou", "chance_miou", "background_miou"):
        assert 0.0 <= e[f"segmentation/{key}"] <= 1.0, key
    printed = capsys.readouterr().out
    assert "segmentation mIoU, head" in printed and "plain CLIP patch tokens" in printed and "chance" in printed
    assert "random init (the control" in printed
    records = [line for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if "train/aux_loss" in line]
    assert len(records) == 2
