"""Real-format training data: WebDataset, CSV + rewrites, JSONL, ArrayRecord, TFDS; bad data; exact resume."""

import collections
import json
import os

import grain
import numpy as np
import pytest
import real_data as rd
from PIL import Image

from input_pipeline.array_record import ArrayRecordSource, decode_record, encode_record
from input_pipeline.cleaning import PROBLEM_INDEX, PROBLEMS, clean_text, decode_image
from input_pipeline.convert import convert
from input_pipeline.decoded_source import DecodedSource
from input_pipeline.jsonl import JsonlSource
from input_pipeline.pipeline import TrainTransform, make_train_iterator
from input_pipeline.skipping import DropSkipped
from input_pipeline.sources import train_texts
from input_pipeline.tabular import CsvSource, DataFileError
from input_pipeline.tokenizer import train_tokenizer
from input_pipeline.webdataset import WebDatasetSource

GOOD = 24
BAD = rd.bad_examples(GOOD)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """Two shards: 24 good JPEG examples, then one example of each bad kind, spread over both."""
    folder = tmp_path_factory.mktemp("shards")
    examples = rd.good_examples(GOOD) + [example for example, _ in BAD]
    rd.write_shard(folder / "a.tar", examples[:20])
    rd.write_shard(folder / "b.tar", examples[20:])
    return [str(folder / "a.tar"), str(folder / "b.tar")]


@pytest.fixture(scope="module")
def source(shards):
    return DecodedSource(WebDatasetSource(shards), 32)


@pytest.fixture(scope="module")
def tokenizer(source):
    return train_tokenizer(train_texts(source), vocab_size=400)


def test_good_examples_decode_to_their_colour_and_caption(source):
    assert len(source) == GOOD + len(BAD)
    for i in range(GOOD):
        record = source[i]
        assert record["image"].shape == (32, 32, 3) and record["image"].dtype == np.uint8
        # JPEG of a flat colour plus noise (sigma 3): the mean stays within 2 levels of the colour.
        np.testing.assert_allclose(record["image"].mean(axis=(0, 1)), rd.colour(i), atol=2)
        assert record["caption"] == rd.caption(i) and record["rewrites"] == ()
        assert not record["problems"].any()


@pytest.mark.parametrize("fmt, shape", [("JPEG", (50, 150, 3)), ("PNG", (34, 100, 3))])
def test_training_decode_keeps_the_aspect_and_shrinks_by_an_integer_factor(fmt, shape):
    # 300 x 100 at size 32: JPEG's DCT draft decodes at 1/2 (1/4 would leave 25 < 32 rows); PNG has no
    # draft and is box-reduced by 100 // 32 = 3 (PIL rounds up: 34 x 100). The training crop then
    # resizes once, from the whole image.
    data = rd.encode(Image.new("RGB", (300, 100), (10, 200, 30)), fmt)
    image = np.asarray(decode_image(data, 32, [], square=False))  # a PIL image, for the crop
    assert image.shape == shape and image.dtype == np.uint8
    np.testing.assert_allclose(image.reshape(-1, 3).mean(axis=0), (10, 200, 30), atol=2)
    assert decode_image(data, 32, []).shape == (32, 32, 3)


def test_each_bad_kind_is_skipped_or_repaired_and_counted(source):
    for offset, (_, kind) in enumerate(BAD):
        record = source[GOOD + offset]
        if kind.startswith("skipped_"):
            assert record == {"skipped": kind.removeprefix("skipped_")}, kind
        else:
            expected = np.zeros(len(PROBLEMS), np.int32)
            expected[PROBLEM_INDEX[kind]] = 1
            np.testing.assert_array_equal(record["problems"], expected, err_msg=kind)
            assert record["image"].shape == (32, 32, 3)


def test_repairs_follow_the_stated_rules(source):
    by_kind = {kind: source[GOOD + i] for i, (_, kind) in enumerate(BAD)}
    pixel = {kind: by_kind[kind]["image"].reshape(-1, 3).mean(axis=0) for kind in by_kind if "image" in by_kind[kind]}
    np.testing.assert_allclose(pixel["repaired_cmyk"], (255, 0, 0), atol=1)  # C=0 M=Y=255 K=0 is red
    np.testing.assert_allclose(pixel["repaired_high_bit_depth"], [40000 * 255 / 65535] * 3, atol=0.6)
    np.testing.assert_allclose(pixel["repaired_alpha"], (255, 127.5, 127.5), atol=1)  # red at alpha 128 over white
    np.testing.assert_allclose(pixel["repaired_palette"], (0, 0, 255), atol=1)
    np.testing.assert_allclose(pixel["repaired_grayscale"], (100, 100, 100), atol=1)
    assert by_kind["repaired_non_utf8_text"]["caption"] == "café au lait"
    overlong = by_kind["repaired_overlong_caption"]["caption"]
    assert len(overlong) <= 1000 and overlong == " ".join(["word"] * 200)


def test_text_rules():
    repairs = []
    assert clean_text(b"  two\n\tlines\x00 ", repairs) == "two lines" and repairs == []
    assert clean_text("é".encode(), repairs) == "é" and repairs == []
    assert clean_text(b"na\xefve", repairs) == "naïve" and repairs == ["repaired_non_utf8_text"]
    assert clean_text(None, []) is None


def _epoch(source, tokenizer, seed, worker_count=0, batch_size=8, process_index=0, process_count=1):
    transform = TrainTransform(tokenizer, 64, "none", (1.0, 1.0))  # long enough for whole captions
    return make_train_iterator(
        source, transform, global_batch_size=batch_size, seed=seed, worker_count=worker_count,
        process_index=process_index, process_count=process_count,
    )  # fmt: skip


def _captions(batch, tokenizer):
    return [tokenizer.decode(row) for row in batch["text"]]


def test_drop_skipped_adds_skips_to_the_next_kept_example():
    def record(name, problems=()):
        counts = np.zeros(len(PROBLEMS), np.int32)
        for p in problems:
            counts[PROBLEM_INDEX[p]] += 1
        return {"name": name, "problems": counts}

    stream = [record("a"), {"skipped": "corrupt_image"}, {"skipped": "tiny_image"}, {"skipped": "corrupt_image"},
              record("b", ["repaired_cmyk"]), record("c")]  # fmt: skip
    out = list(DropSkipped(grain.MapDataset.source(stream).to_iter_dataset()))
    assert [r["name"] for r in out] == ["a", "b", "c"]
    b = dict(zip(PROBLEMS, out[1]["problems"].tolist(), strict=True))
    assert {k: v for k, v in b.items() if v} == {
        "skipped_corrupt_image": 2,
        "skipped_tiny_image": 1,
        "repaired_cmyk": 1,
    }
    assert not out[0]["problems"].any() and not out[2]["problems"].any()
    with pytest.raises(ValueError, match="The last 3 examples read were all unusable"):
        list(DropSkipped(grain.MapDataset.source([{"skipped": "tiny_image"}] * 5).to_iter_dataset(), 3))


def test_pipeline_keeps_batches_full_and_counts_every_problem(source, tokenizer):
    usable = GOOD + sum(kind.startswith("repaired_") for _, kind in BAD)  # 24 + 7 = 31 per epoch
    epochs = 4
    it = _epoch(source, tokenizer, seed=3, batch_size=usable)  # one batch = one epoch of usable examples
    batches = [next(it) for _ in range(epochs)]
    for batch in batches:
        assert batch["image"].shape == (usable, 32, 32, 3)
        assert len(set(_captions(batch, tokenizer))) == usable  # each usable example once per epoch
    counts = dict(zip(PROBLEMS, sum(b["problems"].sum(axis=0) for b in batches).tolist(), strict=True))
    expected = collections.Counter(kind for _, kind in BAD)
    for problem in PROBLEMS:
        if problem.startswith("repaired_"):
            assert counts[problem] == epochs * expected[problem], problem
        else:  # skips after the last usable example of epoch 4 are counted with the next batch
            assert (epochs - 1) * expected[problem] <= counts[problem] <= epochs * expected[problem], problem


@pytest.mark.parametrize("worker_count", [0, 2])
def test_resume_continues_with_the_next_unseen_example(source, tokenizer, worker_count):
    steps, cut = 8, 3
    it = _epoch(source, tokenizer, seed=7, worker_count=worker_count)
    straight = [next(it) for _ in range(steps)]
    it = _epoch(source, tokenizer, seed=7, worker_count=worker_count)
    for _ in range(cut):
        next(it)
    saved = json.loads(json.dumps(it.get_state()))  # what the checkpoint stores
    resumed = _epoch(source, tokenizer, seed=7, worker_count=worker_count)
    resumed.set_state(saved)
    for want in straight[cut:]:
        got = next(resumed)
        for key in ("image", "text", "problems"):
            np.testing.assert_array_equal(got[key], want[key])
    # 8 batches of 8 = 64 examples = 2 epochs of the 31 usable plus 2: every example once per epoch.
    seen = collections.Counter(c for b in straight for c in _captions(b, tokenizer))
    assert all(seen[rd.caption(i)] in (2, 3) for i in range(GOOD))


def test_processes_read_disjoint_shares(source, tokenizer):
    shares = []
    for process in (0, 1):
        it = _epoch(source, tokenizer, seed=0, batch_size=8, process_index=process, process_count=2)
        batch = next(it)
        shares.append(set(_captions(batch, tokenizer)))
    assert len(shares[0]) == len(shares[1]) == 4 and not shares[0] & shares[1]


def test_csv_with_rewrites_in_laclip_format(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    lines = ["path,caption"]  # a header row, detected because its first field is not an image path
    for i in range(4):
        (images / f"{i}.jpg").write_bytes(rd.photo(i))
        lines.append(f"images/{i}.jpg,{rd.caption(i)}")
    lines.append("images/missing.jpg,a file that is not there")
    lines.append("only-one-column")
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    rewrites = [tmp_path / "r0.txt", tmp_path / "r1.txt"]
    for k, path in enumerate(rewrites):
        path.write_bytes(b"\n".join(f"rewrite {k} of row {i}".encode() for i in range(6)) + b"\n")
    raw = CsvSource(str(tmp_path / "data.csv"), rewrite_paths=[str(p) for p in rewrites])
    source = DecodedSource(raw, 16)
    assert len(source) == 6
    assert source[2]["caption"] == rd.caption(2) and source[2]["rewrites"] == (
        "rewrite 0 of row 2",
        "rewrite 1 of row 2",
    )
    np.testing.assert_allclose(source[3]["image"].mean(axis=(0, 1)), rd.colour(3), atol=2)
    assert source[4] == {"skipped": "missing_image"} and source[5] == {"skipped": "malformed_record"}
    rewrites[1].write_text("too few lines\n")
    with pytest.raises(DataFileError, match="has 1 lines but .* has 6 data rows"):
        CsvSource(str(tmp_path / "data.csv"), rewrite_paths=[str(p) for p in rewrites])


def test_tsv_with_named_columns(tmp_path):
    (tmp_path / "a.png").write_bytes(rd.encode(Image.new("RGB", (20, 10), (10, 20, 30)), "PNG"))
    (tmp_path / "d.tsv").write_bytes(b"title\tfilepath\ncaf\xe9 on a table\ta.png\n")
    source = DecodedSource(CsvSource(str(tmp_path / "d.tsv"), image_column="filepath", caption_column="title"), 8)
    record = source[0]
    assert record["caption"] == "café on a table" and record["problems"][PROBLEM_INDEX["repaired_non_utf8_text"]] == 1
    np.testing.assert_array_equal(record["image"], np.broadcast_to([10, 20, 30], (8, 8, 3)))
    with pytest.raises(DataFileError, match="no column 'url'"):
        CsvSource(str(tmp_path / "d.tsv"), image_column="url", caption_column="title")


def test_jsonl_source(tmp_path):
    (tmp_path / "0.jpg").write_bytes(rd.photo(0))
    lines = [
        json.dumps({"image": "0.jpg", "caption": "a dog", "rewrites": ["a puppy", "one dog"]}),
        "{not json",
        json.dumps({"image": "0.jpg"}),
        json.dumps(["a list"]),
    ]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n\n")
    source = DecodedSource(JsonlSource(str(tmp_path / "d.jsonl")), 16)
    assert len(source) == 4
    assert source[0]["caption"] == "a dog" and source[0]["rewrites"] == ("a puppy", "one dog")
    assert [source[i]["skipped"] for i in (1, 2, 3)] == ["malformed_record", "missing_caption", "malformed_record"]


def test_record_format_round_trips_and_rejects_garbage():
    record = encode_record(b"\xff\xd8img", b"caf\xe9", ["one", b"two"])
    assert decode_record(record) == {"image": b"\xff\xd8img", "caption": b"caf\xe9", "rewrites": (b"one", b"two")}
    assert decode_record(encode_record(None, None)) == {"image": None, "caption": None, "rewrites": ()}
    for bad in (b"", record[:-1], record + b"x", b"XYZ" + record[3:]):
        with pytest.raises(ValueError):
            decode_record(bad)


def test_converter_writes_array_record_and_resumes(shards, source, tmp_path):
    raw = WebDatasetSource(shards)
    out = tmp_path / "ar"
    paths = convert(raw, str(out), description={"input": shards}, records_per_shard=10, threads=2)
    assert len(paths) == 4  # 37 examples
    converted = DecodedSource(ArrayRecordSource(paths), 32)
    for i in range(len(source)):
        want, got = source[i], converted[i]
        assert want.keys() == got.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
    # An interrupted run: shard 2 never finished, a temporary file is left behind.
    kept = {p: os.stat(p).st_mtime_ns for p in paths if not p.endswith("part-00002-of-00004.array_record")}
    os.remove(paths[2])
    (out / "part-00002-of-00004.array_record.tmp").write_bytes(b"half")
    again = convert(raw, str(out), description={"input": shards}, records_per_shard=10, threads=2)
    assert again == paths and sorted(os.listdir(out)) == sorted(
        [os.path.basename(p) for p in paths] + ["conversion.json"]
    )
    assert all(os.stat(p).st_mtime_ns == t for p, t in kept.items())  # finished shards were not rewritten
    assert ArrayRecordSource([paths[2]]).raw(3) == raw.raw(23)
    with pytest.raises(ValueError, match="holds a conversion of other input"):
        convert(raw, str(out), description={"input": ["other.tar"]}, records_per_shard=10)


def test_tfds_split_with_several_captions(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    from input_pipeline.tfds_source import TfdsSource

    class TinyCaptions(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            features = {
                "image": tfds.features.Image(),
                "captions": tfds.features.Sequence({"text": tfds.features.Text()}),
            }
            return tfds.core.DatasetInfo(
                builder=self, features=tfds.features.FeaturesDict(features), disable_shuffling=True
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i in range(3):
                yield i, {"image": rd.photo(i), "captions": {"text": [rd.caption(i), f"other {i}", f"third {i}"]}}

    TinyCaptions(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    raw = TfdsSource("tiny_captions", "train", data_dir=str(tmp_path), caption_column="captions/text")
    source = DecodedSource(raw, 16)
    assert len(source) == 3
    assert source[1]["caption"] == rd.caption(1) and source[1]["rewrites"] == ("other 1", "third 1")
    np.testing.assert_allclose(source[2]["image"].mean(axis=(0, 1)), rd.colour(2), atol=2)
    with pytest.raises(DataFileError, match="cannot be read as split 'test'"):
        TfdsSource("tiny_captions", "test", data_dir=str(tmp_path))
