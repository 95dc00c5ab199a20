"""DenseCLIP on your files: PNG masks beside the images (WebDataset `<key>.mask.png`, JSONL `"mask"`) follow the
image's central square by nearest neighbour, bad masks are skipped and counted under their reason, config mistakes
are one sentence naming the fix, and a tiny run trains on such data and reports mIoU on a held-out split."""

from __future__ import annotations

import json

import grain
import numpy as np
import pytest
from PIL import Image
from real_data import encode, write_shard
from tiny_training import tiny_config

from configs import denseclip as denseclip_config
from input_pipeline.decoded_source import DecodedSource
from input_pipeline.skipping import DropSkipped, ProblemCounter
from input_pipeline.sources import make_source
from training.loop import train_and_evaluate
from training.task import make_task
from training.validation import ConfigError, validate_config

SIZE = 16  # the trained side
CLASSES = ("background", "cat", "dog")
# (width, height) of each image: landscape, portrait, square; every central square is 32 px, 2 px per output pixel.
IMAGE_SIZES = ((48, 32), (32, 48), (32, 32))
# Rectangles in the output's pixel grid: (class, row0, row1, col0, col1); 255 is "no class".
RECTANGLES = ((1, 2, 7, 3, 10), (2, 9, 14, 1, 6), (255, 11, 13, 11, 15))


def _expected() -> np.ndarray:
    """uint8 [SIZE, SIZE]: the rectangles drawn straight into the output grid."""
    out = np.zeros((SIZE, SIZE), np.uint8)
    for cls, r0, r1, c0, c1 in RECTANGLES:
        out[r0:r1, c0:c1] = cls
    return out


def _mask(width: int, height: int, mode: str = "L") -> Image.Image:
    """The rectangles drawn at the image's own size: each output pixel is 2 x 2 pixels of the central square,
    and the margins outside the square hold class 2 (the crop must drop them)."""
    side = min(width, height)
    scale, left, top = side // SIZE, (width - side) // 2, (height - side) // 2
    values = np.full((height, width), 2, np.uint8)
    values[top : top + side, left : left + side] = np.repeat(np.repeat(_expected(), scale, 0), scale, 1)
    if mode == "P":  # VOC's layout: palette indices are the classes, the palette colours something else
        img = Image.fromarray(values, "P")
        img.putpalette([v for i in range(256) for v in ((i * 40) % 256, (i * 90) % 256, 255 - i)])
        return img
    return Image.fromarray(values, "L")


def _photo(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return encode(Image.fromarray(rng.integers(0, 255, (height, width, 3), np.uint8)), "JPEG", quality=90)


def _good(index: int, mode: str = "L") -> dict:
    """A WebDataset sample without a caption: `<key>.jpg` and `<key>.mask.png`."""
    width, height = IMAGE_SIZES[index % len(IMAGE_SIZES)]
    mask = encode(_mask(width, height, mode), "PNG")
    return {"key": f"{index:04d}", "jpg": _photo(width, height, index), "mask.png": mask}


def _bad() -> list[tuple[dict, str]]:
    """(sample, its skip reason): one per kind of bad mask."""
    unknown = np.zeros((32, 32), np.uint8)
    unknown[3, 3] = len(CLASSES)  # a class with no name
    photo = _photo(32, 32, 99)
    cases = [
        ({}, "missing_mask"),
        ({"mask.png": b"\x89PNG\r\n\x1a\n not a png"}, "unreadable_mask"),
        ({"mask.png": encode(Image.new("RGB", (32, 32)), "PNG")}, "unreadable_mask"),  # colour-coded, not ids
        ({"mask.png": encode(Image.new("L", (32, 30)), "PNG")}, "mismatched_mask"),
        ({"mask.png": encode(Image.fromarray(unknown, "L"), "PNG")}, "unknown_mask_class"),
    ]
    return [({"key": f"bad{i}", "jpg": photo, **fields}, kind) for i, (fields, kind) in enumerate(cases)]


def _config(name: str, data_path, **evals):
    """configs/denseclip.py on data `name` at `data_path`, at the tiny test size, with CLASSES; `evals` set the
    segmentation entry's options."""
    config = tiny_config(total_steps=2, batch_size=8, log_every_steps=2, eval_every_steps=2, checkpoint_every_steps=2)
    method = denseclip_config.get_config(f"data={name}")
    config.update(objective="denseclip", denseclip=method.denseclip)
    config.evals = method.evals  # the segmentation evaluator alone (update would merge in the base config's)
    config.denseclip.update(class_names=CLASSES, context_tokens=3, decoder_width=16, head_width=16)
    config.evals.segmentation.update(evals)
    config.model.image.conv_stem_depth = 1  # the head's FPN reads the stem's stage
    config.optimizer.frozen_prefixes = ("image_tower",)
    config.data.update(name=name, path=str(data_path), cache_dir="", crop_scale=(1.0, 1.0), read_threads=0)
    config.eval.update(num_examples=8, batch_size=8)
    return config


@pytest.fixture
def shards(tmp_path):
    """train.tar: 6 good samples (masks L and P, no captions) and the bad ones; val.jsonl: 3 held-out images."""
    samples = [_good(i, "LP"[i % 2]) for i in range(6)]
    write_shard(tmp_path / "train.tar", samples + [sample for sample, _ in _bad()])
    lines = []
    for i in range(3):
        sample = _good(10 + i)
        (tmp_path / f"v{i}.jpg").write_bytes(sample["jpg"])
        (tmp_path / "masks").mkdir(exist_ok=True)
        (tmp_path / "masks" / f"v{i}.png").write_bytes(sample["mask.png"])
        lines.append(json.dumps({"image": f"v{i}.jpg", "mask": f"masks/v{i}.png"}))
    (tmp_path / "val.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


class _Tokenizer:
    """Enough of a tokenizer for TrainTransform (the captions are not under test)."""

    def encode(self, texts, max_len):
        return np.zeros((len(texts), max_len), np.int32)


def test_masks_follow_the_images_central_square_by_nearest_neighbour(shards):
    expected = _expected()
    config = _config("webdataset", shards / "train.tar", path=str(shards / "val.jsonl"), data="jsonl")
    task = make_task(config)
    transform = task.transform(_Tokenizer())
    for index in range(6):  # training: the source's mask, then the batch field beside the cropped image
        example = transform.random_map(task.source[index], np.random.default_rng(0))
        assert example["image"].shape == (SIZE, SIZE, 3)
        np.testing.assert_array_equal(example["segmentation"], expected, err_msg=str(IMAGE_SIZES[index % 3]))
        assert example["segmentation"].dtype == np.int32
    held_out = make_source(_config("jsonl", shards / "val.jsonl"))
    for index in range(3):  # the evaluator's square decode reads the same mask
        np.testing.assert_array_equal(held_out[index]["mask"], expected)
        square = DecodedSource(held_out.raw_source, SIZE, mask_classes=len(CLASSES), require_caption=False)[index]
        assert square["image"].shape == (SIZE, SIZE, 3) and np.array_equal(square["mask"], expected)


def test_bad_masks_are_skipped_and_counted_under_their_reason(shards):
    source = make_source(_config("webdataset", shards / "train.tar"))
    bad = _bad()
    for offset, (_, kind) in enumerate(bad):
        assert source[6 + offset] == {"skipped": kind}
    records = [source[i] for i in range(len(source))]
    stream = grain.MapDataset.source(records[6:] + records[:6]).to_iter_dataset()  # the skips first
    counter = ProblemCounter()
    for record in DropSkipped(stream):
        counter.take({"problems": record["problems"][None]})
    metrics = counter.interval_metrics()
    assert metrics["data_skipped"] == len(bad)
    for kind in {kind for _, kind in bad}:
        assert metrics[f"data_skipped_{kind}"] == sum(k == kind for _, k in bad), kind
    # A JSONL line's mask path that cannot be read is a missing mask.
    (shards / "bad.jsonl").write_text(json.dumps({"image": "v0.jpg", "mask": "masks/absent.png"}) + "\n")
    assert make_source(_config("jsonl", shards / "bad.jsonl"))[0] == {"skipped": "missing_mask"}
    # Captions are required again once a loss reads them.
    with_captions = _config("webdataset", shards / "train.tar")
    with_captions.denseclip.clip_weight = 0.5
    assert make_source(with_captions)[0] == {"skipped": "missing_caption"}


CONFIG_ERRORS = [
    ("class_names", dict(), r"class_names are still the shapes classes; set them to your masks' classes"),
    ("csv", dict(), r"DenseCLIP reads masks from the shapes data or from PNG files .* not config.data.name='csv'"),
    ("eval_path", dict(), r"config.evals.segmentation scores the shapes masks, .* set config.evals.segmentation.path"),
    ("eval_data", dict(path="/v.tar", data="csv"), r"config.evals.segmentation.data is 'csv', which holds no masks"),
    ("clip", dict(path="/v.tar"), r"config.evals.segmentation.path names masks whose classes only a DenseCLIP run"),
]


@pytest.mark.parametrize("case, evals, message", CONFIG_ERRORS, ids=[c for c, _, _ in CONFIG_ERRORS])
def test_config_mistakes_are_one_sentence_naming_the_fix(case, evals, message):
    config = _config("webdataset", "/data/train.tar", path="/data/val.tar")
    validate_config(config)
    config.evals.segmentation.update({"path": "", **evals})
    if case == "class_names":
        config.denseclip.class_names = denseclip_config.get_config().denseclip.class_names
    elif case == "csv":
        config.data.name = "csv"
    elif case == "clip":
        config.objective = "clip"
        del config["denseclip"]
    with pytest.raises(ConfigError, match=message) as error:
        validate_config(config)
    assert "\n" not in str(error.value) and str(error.value).endswith(".")


def test_denseclip_trains_on_png_masks_and_reports_miou_on_held_out_files(shards, capsys):
    config = _config("webdataset", shards / "train.tar", path=str(shards / "val.jsonl"), data="jsonl")
    validate_config(config)
    summary = train_and_evaluate(config, str(shards / "run"))
    assert summary["step"] == 2 and np.isfinite(summary["final_loss"])
    for key in ("miou", "score_miou", "clip_miou", "chance_miou", "background_miou"):
        assert 0.0 <= summary["eval"][f"segmentation/{key}"] <= 1.0, key
    printed = capsys.readouterr().out
    assert "segmentation mIoU, head" in printed and "all background" in printed
    rows = [json.loads(line) for line in (shards / "run" / "metrics.jsonl").read_text().splitlines()]
    train = next(r for r in rows if "train/seg_loss" in r)
    # 16 examples drawn from 6 usable ones: two whole epochs read, so every bad sample was met and counted.
    for _, kind in _bad():
        assert train.get(f"train/data_skipped_{kind}", 0) >= 1, kind
    assert sum(v for k, v in train.items() if k.startswith("train/data_skipped_")) == train["train/data_skipped"]
