import numpy as np
import pytest

from input_pipeline import shapes
from input_pipeline.pipeline import TrainTransform, make_train_iterator
from input_pipeline.tokenizer import train_tokenizer

SOURCE = shapes.ShapesSource("train", 64, seed=0, image_size=32)
TOKENIZER = train_tokenizer((SOURCE[i]["caption"] for i in range(64)), vocab_size=400)


def _batches(seed, n=4, process_index=0, process_count=1, augmentation="laclip", read_threads=2):
    transform = TrainTransform(TOKENIZER, 24, augmentation, (0.8, 1.0))
    it = make_train_iterator(
        SOURCE, transform, global_batch_size=16, seed=seed, process_index=process_index,
        process_count=process_count, read_threads=read_threads,
    )  # fmt: skip
    return [next(it) for _ in range(n)]


def test_batches_have_the_documented_shapes():
    batch = _batches(0, n=1)[0]
    assert batch["image"].shape == (16, 32, 32, 3) and batch["image"].dtype == np.uint8
    assert batch["text"].shape == (16, 24) and batch["text"].dtype == np.int32


def test_same_seed_same_batches_other_seed_other_batches():
    a, b, c = _batches(0), _batches(0), _batches(1)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x["image"], y["image"]) and np.array_equal(x["text"], y["text"])
    assert not np.array_equal(a[0]["image"], c[0]["image"])


def test_reader_threads_change_nothing_but_speed():
    inline, threaded = _batches(3, n=5, read_threads=0), _batches(3, n=5, read_threads=3)
    for x, y in zip(inline, threaded, strict=True):
        assert np.array_equal(x["image"], y["image"]) and np.array_equal(x["text"], y["text"])


def test_epochs_reshuffle_and_resample_captions():
    # 64 examples, batch 16: batches 0-3 are epoch 0 and 4-7 epoch 1, each a permutation.
    batches = _batches(0, n=8, augmentation="none")
    first = {t.tobytes() for b in batches[:4] for t in b["text"]}
    second = {t.tobytes() for b in batches[4:] for t in b["text"]}
    assert first == second  # same captions, every example once per epoch
    assert not np.array_equal(batches[0]["text"], batches[4]["text"])  # in another order


def test_processes_read_disjoint_halves():
    transform = TrainTransform(TOKENIZER, 24, "none", (1.0, 1.0))  # no crop: images identify examples
    seen = []
    for process in (0, 1):
        it = make_train_iterator(
            SOURCE, transform, global_batch_size=16, seed=0, process_index=process, process_count=2
        )
        batches = [next(it) for _ in range(4)]  # 4 x 8 = each process's 32 examples, once
        assert batches[0]["image"].shape[0] == 8
        seen.append({image.tobytes() for b in batches for image in b["image"]})
    expected = {SOURCE[i]["image"].tobytes() for i in range(64)}
    assert len(seen[0]) == len(seen[1]) == 32
    assert not seen[0] & seen[1] and seen[0] | seen[1] == expected


def test_iterator_state_resumes_exactly():
    transform = TrainTransform(TOKENIZER, 24, "laclip", (0.8, 1.0))
    it = make_train_iterator(SOURCE, transform, global_batch_size=16, seed=5)
    next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(3)]
    resumed = make_train_iterator(SOURCE, transform, global_batch_size=16, seed=5)
    resumed.set_state(state)
    for want in expected:
        got = next(resumed)
        assert np.array_equal(got["image"], want["image"]) and np.array_equal(got["text"], want["text"])


def test_objective_batch_fields_join_each_example():
    def hard_negative_tokens(record, rng, encode):
        return {"hard_negatives": encode(list(record["hard_negatives"])), "draw": rng.integers(1 << 30)}

    transform = TrainTransform(TOKENIZER, 24, "none", (1.0, 1.0), hard_negative_tokens)
    batch = next(make_train_iterator(SOURCE, transform, global_batch_size=4, seed=0))
    assert batch["hard_negatives"].shape == (4, 6, 24)
    for row in range(4):  # the row's hard negatives are those of the record whose image it holds
        index = next(i for i in range(len(SOURCE)) if np.array_equal(batch["image"][row], SOURCE[i]["image"]))
        expected = TOKENIZER.encode(list(SOURCE[index]["hard_negatives"]), 24)
        np.testing.assert_array_equal(batch["hard_negatives"][row], expected)
    assert len(set(batch["draw"].tolist())) == 4  # each example gets its own generator


def _captions_or_rewrites(batches, originals):
    """Per batch, how many texts are some example's original caption (tokenized)."""
    return [sum(t.tobytes() in originals for t in b["text"]) for b in batches]


def test_rewrite_warmup_draws_originals_first_and_rewrites_later():
    originals = {TOKENIZER.encode([SOURCE[i]["caption"]], 24)[0].tobytes() for i in range(64)}
    transform = TrainTransform(TOKENIZER, 24, "laclip", (1.0, 1.0), rewrite_warmup_examples=10**9)
    it = make_train_iterator(SOURCE, transform, global_batch_size=16, seed=0)
    assert _captions_or_rewrites([next(it) for _ in range(4)], originals) == [16] * 4  # fraction ~0
    # A 64-example warm-up: epoch 0 ramps up, epoch 1 draws as the paper does (an original w.p. ~1/5 + short rewrites).
    transform = TrainTransform(TOKENIZER, 24, "laclip", (1.0, 1.0), rewrite_warmup_examples=64)
    it = make_train_iterator(SOURCE, transform, global_batch_size=16, seed=0)
    counts = _captions_or_rewrites([next(it) for _ in range(16)], originals)
    assert counts[0] >= 13  # positions 0-15: a rewrite w.p. at most 0.8 * 15/64
    assert sum(counts[4:]) / (12 * 16) < 0.35  # binomial around ~0.23: well below the warm-up's first batch


def _grain_source_stream(transform, seed, process_index, process_count, workers, n):
    """The stream as written with grain's own source stage (the chain before RecordDataset): the reference."""
    import grain

    from input_pipeline.skipping import DropSkipped, SkipAware

    ds = grain.MapDataset.source(SOURCE)[process_index::process_count].seed(seed * 1_000_003 + process_index)
    ds = ds.shuffle().repeat().map_with_index(lambda position, record: {**record, "position": position})
    ds = DropSkipped(ds.random_map(SkipAware(transform)).to_iter_dataset()).batch(16 // process_count)
    if workers:
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    it = iter(ds)
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("process_index, process_count, workers", [(0, 1, 0), (1, 2, 0), (0, 1, 2)])
def test_the_record_stage_reads_what_grains_source_stage_reads(process_index, process_count, workers):
    """RecordDataset (no per-record metrics) and one process without a slice: the same batches as grain's
    source stage, rewrite warm-up positions, epochs and worker processes included (6 batches = 1.5 epochs of 64
    at one process)."""
    transform = TrainTransform(TOKENIZER, 24, "laclip", (0.8, 1.0), rewrite_warmup_examples=40)
    it = make_train_iterator(
        SOURCE, transform, global_batch_size=16, seed=2, process_index=process_index, process_count=process_count,
        worker_count=workers,
    )  # fmt: skip
    expected = _grain_source_stream(transform, 2, process_index, process_count, workers, 6)
    for want in expected:
        got = next(it)
        assert set(got) == set(want)
        assert all(np.array_equal(got[key], want[key]) for key in want)
