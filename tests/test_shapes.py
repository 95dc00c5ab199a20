import numpy as np
import pytest

from input_pipeline import shapes


def test_examples_are_pure_functions_of_seed_split_index():
    a = shapes.make_example(3, "train", 17)
    b = shapes.make_example(3, "train", 17)
    assert np.array_equal(a["image"], b["image"])
    assert a["caption"] == b["caption"] and a["rewrites"] == b["rewrites"]
    other = [shapes.make_example(4, "train", 17), shapes.make_example(3, "validation", 17)]
    assert all(not np.array_equal(a["image"], o["image"]) for o in other)


def test_fields_and_labels_are_consistent():
    for index in range(50):
        e = shapes.make_example(0, "train", index)
        n = int(e["num_objects"])
        assert e["image"].shape == (32, 32, 3) and e["image"].dtype == np.uint8
        assert len(e["rewrites"]) == shapes.NUM_REWRITES
        assert len(e["hard_negatives"]) == len(shapes.HARD_NEGATIVE_TYPES)
        assert e["caption"] not in e["hard_negatives"]
        assert len(e["region_captions"]) == n and e["caption"].count(",") == n - 1
        assert e["shape_colour"] == e["shape"] * len(shapes.COLOURS) + e["colour"]
        # The primary object's words open the caption: "[<size>] <colour> <shape> [<position>]".
        words = [w for w in e["caption"].split(",")[0].split(" ") if w not in shapes.SIZES]
        assert (shapes.COLOURS.index(words[0]), shapes.SHAPES.index(words[1])) == (e["colour"], e["shape"])
        assert e["long_caption"].count(".") == n + 1
        assert np.all(e["boxes"][n:] == 0) and np.all(e["boxes"][:n, 2:] > e["boxes"][:n, :2])


def test_captions_state_size_and_position_half_the_time_and_rewrites_agree():
    examples = [shapes.make_example(0, "train", i) for i in range(400)]
    with_size = [any(w in shapes.SIZES for w in e["caption"].split()) for e in examples]
    assert 0.4 < np.mean(with_size) < 0.6
    for e, sized in zip(examples, with_size, strict=True):
        size_words = {w for s in shapes.SIZES for w in (s, *shapes._SYNONYMS[s])}
        for rewrite in e["rewrites"]:
            if len(rewrite.split()) >= 2:  # degenerate rewrites aside
                assert any(w in size_words for w in rewrite.split()) == sized, (e["caption"], rewrite)


def test_test_split_has_one_object_whose_colour_is_in_the_image():
    for index in range(20):
        e = shapes.make_example(0, "test", index)
        assert e["num_objects"] == 1
        pixels = e["image"].reshape(-1, 3).astype(np.float32)
        distance = np.linalg.norm(pixels - shapes.COLOUR_RGB[e["colour"]], axis=1)
        assert np.sum(distance < 40) >= 4, "the object's colour should cover a few pixels"


def test_source_matches_make_example_and_caches(tmp_path):
    source = shapes.ShapesSource("train", 20, seed=1, cache_dir=str(tmp_path))
    cached = shapes.ShapesSource("train", 20, seed=1, cache_dir=str(tmp_path))
    assert len(list(tmp_path.iterdir())) == 2  # one .npz and one .json
    for i in (0, 7, 19):
        want = shapes.make_example(1, "train", i)
        for got in (source[i], cached[i]):
            assert np.array_equal(got["image"], want["image"])
            assert got["rewrites"] == want["rewrites"] and got["hard_negatives"] == want["hard_negatives"]
    with pytest.raises(IndexError):
        source[20]


def test_parallel_render_equals_make_example(monkeypatch):
    monkeypatch.setattr(shapes, "PARALLEL_RENDER_MIN", 4)  # spawn worker processes for a small split
    columns = shapes.render_split("train", 1200, seed=2, image_size=32)  # > one chunk per worker
    for i in (0, 499, 500, 1199):
        want = shapes.make_example(2, "train", i, 32)
        assert np.array_equal(columns["image"][i], want["image"])
        assert columns["caption"][i] == want["caption"] and columns["rewrites"][i] == want["rewrites"]


def test_unknown_split_is_a_clear_error():
    with pytest.raises(ValueError, match="use one of"):
        shapes.ShapesSource("dev", 10)
