"""CLOC: the shapes boxes bound the pixels of their objects, the loss equals a float64 NumPy recomputation,
the region evaluator's metrics are right on perfect and random predictors, and a run trains end to end."""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from contrastive_reference import grouped_infonce
from tiny_training import tiny_config

from configs import cloc as cloc_config
from evaluation import region_eval
from input_pipeline import shapes
from losses import cloc
from training.loop import train_and_evaluate
from training.validation import ConfigError, validate_config


@pytest.mark.parametrize("image_size", [32, 48])
def test_boxes_bound_the_pixels_of_each_object(image_size):
    """The object's pixels, found without the renderer: every colour is saturated (max - min channel >= 120)
    and the background grey (<= ~40), and each object stays inside its own cell of the 3 x 3 grid."""
    for index in range(60):
        e = shapes.make_example(0, "train", index, image_size)
        image = e["image"].astype(np.int32)
        saturated = image.max(-1) - image.min(-1) > 70  # pixels mostly covered by an object
        for k in range(int(e["num_objects"])):
            x0, y0, x1, y1 = e["boxes"][k] * image_size
            col, row = (int((x0 + x1) / 2 / image_size * 3), int((y0 + y1) / 2 / image_size * 3))
            cell = np.zeros_like(saturated)
            cell[round(row * image_size / 3) : round((row + 1) * image_size / 3),
                 round(col * image_size / 3) : round((col + 1) * image_size / 3)] = True  # fmt: skip
            rows, cols = np.nonzero(saturated & cell)
            assert len(rows) >= 3, (index, k)
            # The object's pixels lie in its box, and the box is tight to them within 1.5 pixels.
            assert (
                x0 - 1 <= cols.min() and cols.max() + 1 <= x1 + 1 and y0 - 1 <= rows.min() and rows.max() + 1 <= y1 + 1
            )
            assert abs(cols.min() - x0) <= 1.5 and abs(x1 - cols.max() - 1) <= 1.5, (index, k)
            assert abs(rows.min() - y0) <= 1.5 and abs(y1 - rows.max() - 1) <= 1.5, (index, k)
        assert np.all(e["boxes"][int(e["num_objects"]) :] == 0)


def test_generalized_iou_on_hand_computed_boxes():
    a = jnp.array([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.25, 0.25], [0.1, 0.2, 0.3, 0.4]])
    b = jnp.array([[0.25, 0.25, 0.75, 0.75], [0.5, 0.5, 1.0, 1.0], [0.1, 0.2, 0.3, 0.4]])
    iou, giou = cloc.generalized_iou(a, b)
    # Overlap 1/16 of union 7/16 inside a hull of 9/16; disjoint: union 5/16 in a hull of 1; identical boxes.
    np.testing.assert_allclose(iou, [1 / 7, 0.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(giou, [1 / 7 - (9 / 16 - 7 / 16) / (9 / 16), -(1 - 5 / 16), 1.0], rtol=1e-6)


def test_region_fields_pad_and_mark_captions_that_name_one_object():
    record = {"boxes": np.array([[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.9, 0.8]]), "region_captions": ("a b", "a b")}
    fields = cloc.region_fields(record, np.random.default_rng(0), lambda texts: np.zeros((len(texts), 4), np.int32))
    np.testing.assert_array_equal(fields["region_boxes"][:2], record["boxes"].astype(np.float32))
    assert not fields["region_boxes"][2].any() and fields["region_text"].shape == (3, 4)
    assert fields["region_valid"].tolist() == [True, True, False]
    assert fields["ground_valid"].tolist() == [False, False, False]  # "a b" names two objects
    assert fields["region_group"][0] == fields["region_group"][1] == cloc.caption_group("a b")


def _unit(rng, *shape):
    x = rng.normal(size=shape)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _reference_ground(predicted, target, valid):
    per = []
    for p, t in zip(predicted[valid], target[valid], strict=True):
        inter = np.prod(np.clip(np.minimum(p[2:], t[2:]) - np.maximum(p[:2], t[:2]), 0, None))
        area = lambda q: np.prod(q[2:] - q[:2])  # noqa: E731
        union = area(p) + area(t) - inter
        hull = np.prod(np.maximum(p[2:], t[2:]) - np.minimum(p[:2], t[:2]))
        per.append(5 * np.abs(p - t).sum() + 2 * (1 - (inter / union - (hull - union) / hull)))
    return np.mean(per)


def test_cloc_loss_is_clip_plus_region_infonce_plus_box_loss():
    rng = np.random.default_rng(0)
    batch, regions, dim, log_scale = 6, 3, 8, np.log(7.0)
    corner = rng.uniform(0, 0.5, size=(batch, regions, 2))
    boxes = lambda: np.concatenate([corner + rng.uniform(-0.1, 0.1, corner.shape), corner + 0.3], -1)  # noqa: E731
    valid = rng.random((batch, regions)) < 0.7
    valid[0] = True
    group = rng.integers(0, 4, (batch, regions))
    embeddings = {
        "image_embedding": _unit(rng, batch, dim),
        "text_embedding": _unit(rng, batch, dim),
        "region_embedding": _unit(rng, batch, regions, dim),
        "region_text_embedding": _unit(rng, batch, regions, dim),
        "grounded_box": boxes(),
    }
    batch_fields = {"region_boxes": boxes(), "region_valid": valid, "region_group": group, "ground_valid": valid}
    config = cloc_config.get_config()
    config.cloc.update(region_weight=0.5, grounding_weight=0.25)
    model = types.SimpleNamespace(apply=lambda variables, *args, **kw: {"logit_scale": variables["params"]["s"]})
    with jax.enable_x64(True):
        loss, metrics = cloc.loss_from_embeddings(
            {"s": jnp.float64(log_scale)}, jax.tree.map(jnp.asarray, embeddings), batch_fields, {}, None,
            model=model, config=config,
        )  # fmt: skip
    e, s = embeddings, np.exp(log_scale)
    clip = grouped_infonce(e["image_embedding"], e["text_embedding"], s, np.ones(batch, bool), np.arange(batch))
    region = grouped_infonce(
        e["region_embedding"].reshape(-1, dim), e["region_text_embedding"].reshape(-1, dim), s,
        valid.reshape(-1), group.reshape(-1),
    )  # fmt: skip
    ground = _reference_ground(e["grounded_box"], batch_fields["region_boxes"], valid)
    np.testing.assert_allclose(metrics["clip_loss"], clip, rtol=1e-10)
    np.testing.assert_allclose(metrics["region_loss"], region, rtol=1e-10)
    np.testing.assert_allclose(metrics["grounding_loss"], ground, rtol=1e-10)
    np.testing.assert_allclose(loss, clip + 0.5 * region + 0.25 * ground, rtol=1e-10)


def test_region_metrics_of_perfect_and_random_predictors():
    rng = np.random.default_rng(1)
    n, r, classes_count = 400, 3, len(region_eval.CLASSES)
    classes = rng.integers(0, classes_count, (n, r))
    valid = rng.random((n, r)) < 0.8
    perfect = np.eye(classes_count)[classes]
    assert region_eval.classification_metrics(perfect, classes, valid) == {"caption_top1": 1.0, "colour_shape": 1.0}
    random = region_eval.classification_metrics(rng.normal(size=(n, r, classes_count)), classes, valid)
    assert random["caption_top1"] < 0.03 and random["colour_shape"] < 0.05  # chance 1/128 and 1/64

    boxes = np.concatenate([rng.uniform(0, 0.5, (n, r, 2)), rng.uniform(0.6, 1.0, (n, r, 2))], -1)
    assert region_eval.box_grounding(boxes, boxes, valid) == {"iou50": 1.0, "mean_iou": 1.0}
    shifted = boxes + np.array([1.0, 0.0, 1.0, 0.0])  # beside the true box: no overlap
    assert region_eval.box_grounding(shifted, boxes, valid) == {"iou50": 0.0, "mean_iou": 0.0}

    candidate_iou = np.zeros((n, r, 4))
    candidate_iou[..., 2] = 0.8  # one candidate of four covers each region
    scores = np.zeros((n, r, 4))
    scores[..., 2] = 1.0
    got = region_eval.candidate_grounding(scores, candidate_iou, valid)
    assert got == {"roi_iou50": 1.0, "roi_ceiling": 1.0, "chance": 0.25}
    assert region_eval.candidate_grounding(-scores, candidate_iou, valid)["roi_iou50"] == 0.0


def test_candidate_boxes_cover_most_objects_of_the_held_out_images():
    examples = [shapes.make_example(region_eval.REGION_EVAL_SEED, "validation", i) for i in range(100)]
    regions = region_eval.regions_of(examples)
    best = region_eval.box_iou(regions["boxes"][:, :, None], region_eval.candidate_boxes()).max(-1)
    assert np.mean(best[regions["valid"]] >= 0.5) > 0.6  # the baseline's ceiling is well above chance


def test_cloc_options_are_checked_before_jax_starts():
    config = cloc_config.get_config()
    config.data.crop_scale = (0.5, 1.0)
    with pytest.raises(ConfigError, match=r"set config.data.crop_scale=\(1.0, 1.0\)"):
        validate_config(config)
    config = cloc_config.get_config()
    config.model.region_depth = 0
    with pytest.raises(ConfigError, match="config.model.region_depth >= 1"):
        validate_config(config)


def test_cloc_trains_and_reports_regions_beside_the_baseline(tmp_path):
    config = tiny_config(total_steps=6, batch_size=16, log_every_steps=3, eval_every_steps=6,
                         checkpoint_every_steps=6)  # fmt: skip
    method = cloc_config.get_config()
    config.update(objective="cloc", cloc=method.cloc, evals=method.evals)
    config.model.region_depth = 1
    config.data.update(train_size=64, cache_dir="", crop_scale=(1.0, 1.0))
    config.eval.update(num_examples=32, batch_size=16)
    validate_config(config)
    summary = train_and_evaluate(config, str(tmp_path))
    e = summary["eval"]
    assert summary["step"] == 6 and np.isfinite(summary["final_loss"])
    for key in ("regions/caption_top1", "regions/roi_caption_top1", "grounding/iou50", "grounding/roi_iou50"):
        assert 0.0 <= e[key] <= 1.0, key
    assert e["regions/chance_caption"] == 1 / 128 and e["grounding/roi_ceiling"] >= e["grounding/roi_iou50"]
    records = [line for line in (tmp_path / "metrics.jsonl").read_text().splitlines() if "train/region_loss" in line]
    assert len(records) == 2


def test_regions_of_a_webdataset_sample_move_into_the_trained_square(tmp_path):
    import json

    import real_data as rd

    from input_pipeline.cleaning import PROBLEM_INDEX
    from input_pipeline.decoded_source import DecodedSource
    from input_pipeline.webdataset import WebDatasetSource

    meta = {
        # A 48 x 40 photo: its central square is x in [4, 44) of 48, all of y.
        "boxes": [[0.25, 0.5, 0.5, 1.0], [0.0, 0.0, 0.05, 0.1], [0.5, 0.5, 0.4, 0.9], [0.1, 0.2, 0.3]],
        "region_captions": ["a red  square", "a sliver left of the square", "inverted", "three numbers"],
    }
    samples = [
        {"key": "000000", "jpg": rd.photo(0), "txt": b"a photo", "json": json.dumps(meta).encode()},
        {"key": "000001", "jpg": rd.photo(1), "txt": b"no regions"},
    ]
    rd.write_shard(tmp_path / "shard-000.tar", samples)
    source = DecodedSource(WebDatasetSource([str(tmp_path / "shard-000.tar")]), image_size=16)
    first, second = source[0], source[1]
    # x: (0.25 * 48 - 4) / 40 = 0.2 and (0.5 * 48 - 4) / 40 = 0.5; y unchanged.
    np.testing.assert_allclose(first["boxes"], [[0.2, 0.5, 0.5, 1.0]], rtol=1e-6)
    assert first["region_captions"] == ("a red square",)
    assert first["problems"][PROBLEM_INDEX["repaired_dropped_region"]] == 3  # outside, inverted, 3 numbers
    assert "boxes" not in second
    fields = cloc.region_fields(second, None, lambda texts: np.zeros((len(texts), 4), np.int32))
    assert not fields["region_valid"].any()  # a sample without regions brings none

    config = cloc_config.get_config("data=webdataset")
    config.data.path = str(tmp_path / "shard-*.tar")
    validate_config(config)  # the json can supply boxes and region captions
