"""dialog_metrics' intent and slot probes on embeddings that do or do not encode the frames."""

import numpy as np

from evaluation import dialog_eval
from input_pipeline import dialog_frames, shapes

INTENTS = ("move", "recolour", "remove", "count", "locate", "describe")
# Every "slot-value" item of the grammar, written out: 8 objects + 8 colours + 9 positions.
SV_ITEMS = (
    [f"object-{s}" for s in shapes.SHAPES]
    + [f"colour-{c}" for c in shapes.COLOURS]
    + [f"position-{p}" for p in shapes.POSITIONS]
)
N = 600


def _frames(split: str) -> list[dialog_frames.Frame]:
    return [dialog_frames.command(0, split, i)[1] for i in range(N)]


def _one_hot_intents(frames, rng) -> np.ndarray:
    x = np.array([[f.intent == name for name in INTENTS] for f in frames], np.float64)
    return x + 1e-3 * rng.normal(size=x.shape)


def _multi_hot_items(frames) -> np.ndarray:
    return np.array([[item in {f"{s}-{v}" for s, v in f.slots} for item in SV_ITEMS] for f in frames], np.float64)


def test_embeddings_of_the_intent_score_100():
    rng = np.random.default_rng(0)
    probe, test = _frames("probe"), _frames("test")
    metrics = dialog_eval.dialog_metrics(_one_hot_intents(probe, rng), probe, _one_hot_intents(test, rng), test)
    assert metrics["intent_probe"] == 100.0
    assert metrics["intent_1shot"] == metrics["intent_5shot"] == 100.0
    assert set(metrics) == {"intent_probe", "intent_1shot", "intent_5shot", "slot_f1"}


def test_embeddings_of_the_slot_values_score_100():
    probe, test = _frames("probe"), _frames("test")
    metrics = dialog_eval.dialog_metrics(_multi_hot_items(probe), probe, _multi_hot_items(test), test)
    assert metrics["slot_f1"] == 100.0


def test_random_embeddings_score_chance():
    rng = np.random.default_rng(1)
    probe, test = _frames("probe"), _frames("test")
    metrics = dialog_eval.dialog_metrics(rng.normal(size=(N, 32)), probe, rng.normal(size=(N, 32)), test)
    # Predictions independent of the test labels (uniform over 6 intents) are right w.p. 1/6 each, so the
    # accuracy on 600 examples has std 100 sqrt(1/6 x 5/6 / 600) = 1.5 points: +-8 points is over 5 std.
    for name in ("intent_probe", "intent_1shot", "intent_5shot"):
        assert abs(metrics[name] - 100 / 6) < 8, (name, metrics[name])
    # No item occurs in over a sixth of the frames, so a probe with nothing to read predicts almost none.
    assert metrics["slot_f1"] < 20


def test_micro_f1_by_hand():
    predicted = np.array([[1, 1, 0], [0, 0, 1]], bool)
    true = np.array([[1, 0, 0], [0, 1, 1]], bool)
    # TP 2 (both rows), FP 1 (row 0, item 1), FN 1 (row 1, item 1): 2 x 2 / (2 x 2 + 1 + 1) = 2 / 3.
    assert dialog_eval.micro_f1(predicted, true) == 2 / 3
    assert dialog_eval.micro_f1(np.zeros((2, 3), bool), np.zeros((2, 3), bool)) == 1.0


def test_items_unseen_in_the_probe_set_count_as_missed():
    square = dialog_frames.Frame("query", "count", (("object", "square"),))
    star = dialog_frames.Frame("query", "count", (("object", "star"),))
    rng = np.random.default_rng(2)
    # Every probe frame holds the square, so it is predicted for both test frames, and the star never is:
    # TP 1, FP 1 (the star's frame), FN 1 (its star): 2 / (2 + 1 + 1).
    probe, test = rng.normal(size=(10, 4)), rng.normal(size=(2, 4))
    metrics = dialog_eval.dialog_metrics(probe, [square] * 10, test, [square, star], shots=(1,))
    assert metrics["slot_f1"] == 50.0
