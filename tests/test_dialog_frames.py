"""The embedded task-oriented commands: frame items and ids, determinism, utterances that state their frames."""

import re

import numpy as np
import pytest

from input_pipeline import dialog_frames, shapes
from input_pipeline.dialog_frames import Frame

MOVE = Frame("edit", "move", (("colour", "red"), ("object", "square"), ("position", "top left")))


def test_frame_items_of_every_view():
    assert dialog_frames.frame_items(MOVE) == {
        "D": {"edit"},
        "I": {"move"},
        "S": {"colour", "object", "position"},
        "V": {"red", "square", "top left"},
        "DI": {"edit-move"},
        "IS": {"move-colour", "move-object", "move-position"},
        "SV": {"colour-red", "object-square", "position-top left"},
        "DIS": {"edit-move-colour", "edit-move-object", "edit-move-position"},
        "ISV": {"move-colour-red", "move-object-square", "move-position-top left"},
        "DISV": {"edit-move-colour-red", "edit-move-object-square", "edit-move-position-top left"},
    }


def test_frame_item_ids():
    assert dialog_frames.item_id("D", "edit") == 1941746068  # pinned: ids must not change between versions
    ids = dialog_frames.frame_item_ids(MOVE)
    assert ids.shape == (10, 4) and ids.dtype == np.int32
    assert ids[0].tolist() == [dialog_frames.item_id("D", "edit"), -1, -1, -1]
    sv = sorted(dialog_frames.item_id("SV", item) for item in ("colour-red", "object-square", "position-top left"))
    assert ids[6].tolist() == sv + [-1]
    counts = [1, 1, 3, 3, 1, 3, 3, 3, 3, 3]  # D I S V DI IS SV DIS ISV DISV
    assert (ids >= 0).sum(axis=1).tolist() == counts
    for row, count in zip(ids, counts, strict=True):
        assert (np.diff(row[:count]) > 0).all() and (row[count:] == -1).all()

    same = Frame("edit", "move", (("colour", "red"), ("object", "square"), ("position", "top left")))
    np.testing.assert_array_equal(dialog_frames.frame_item_ids(same), ids)
    other = Frame("edit", "move", (("colour", "blue"), ("object", "square"), ("position", "top left")))
    differs = (dialog_frames.frame_item_ids(other) != ids).any(axis=1)
    assert [v for v, d in zip(dialog_frames.VIEWS, differs, strict=True) if d] == ["V", "SV", "ISV", "DISV"]


def test_commands_are_deterministic():
    first = [dialog_frames.command(0, "test", i) for i in range(50)]
    assert first == [dialog_frames.command(0, "test", i) for i in range(50)]
    assert first != [dialog_frames.command(1, "test", i) for i in range(50)]
    assert first != [dialog_frames.command(0, "probe", i) for i in range(50)]


def _stated(text: str, slot: str, value: str) -> bool:
    """Whether `text` states `value` of `slot` in one of the wordings a reader would accept."""
    if slot == "position":
        # "the top" must not be read off "the top left": a phrase may not be followed by left/right.
        phrases = (f"at the {value}", f"to the {value}") + shapes._POSITION_PHRASES[value]
        return any(re.search(re.escape(p) + r"(?! left| right)\b", text) for p in phrases)
    words = (value,) + shapes._SYNONYMS[value]
    plural = r"(s|es)?" if slot == "object" else ""
    return any(re.search(rf"\b{re.escape(w)}{plural}\b", text) for w in words)


REQUIRED = {
    "move": {"object", "position"},
    "recolour": {"object", "colour"},
    "remove": {"object"},
    "count": {"object"},
    "locate": {"object"},
    "describe": {"position"},
}
ALLOWED = {
    "move": {"object", "position", "colour"},
    "recolour": {"object", "colour", "position"},
    "remove": {"object", "colour", "position"},
    "count": {"object", "colour"},
    "locate": {"object", "colour"},
    "describe": {"position"},
}


def test_utterances_state_their_frames():
    intents = set()
    for i in range(300):
        text, frame = dialog_frames.command(3, "train", i)
        intents.add(frame.intent)
        slots = [s for s, _ in frame.slots]
        assert slots == sorted(set(slots)), frame
        assert REQUIRED[frame.intent] <= set(slots) <= ALLOWED[frame.intent], frame
        assert frame.domain == ("edit" if frame.intent in ("move", "recolour", "remove") else "query")
        for slot, value in frame.slots:
            assert _stated(text, slot, value), (text, frame)
    assert intents == {"move", "recolour", "remove", "count", "locate", "describe"}


def test_command_source():
    source = dialog_frames.CommandSource(200, labelled_fraction=0.1, seed=1)
    assert len(source) == 200
    records = [source[i] for i in range(200)]
    for i in range(20):  # a pool of round(200 x 0.1) = 20 labelled commands, cycled through
        assert records[i]["text"] == records[i + 20]["text"] == records[i + 180]["text"]
        np.testing.assert_array_equal(records[i]["frame"], records[i + 20]["frame"])
    assert len({r["text"] for r in records}) > 15
    assert records[0]["frame"].shape == (10, 4) and records[0]["frame"].dtype == np.int32
    assert len({r["unlabelled"] for r in records}) > 180  # short commands ("count the boxes") recur by chance
    with pytest.raises(IndexError, match="index 200 out of range for 200 examples"):
        source[200]
    with pytest.raises(IndexError):
        source[-1]
    assert dialog_frames.CommandSource(5, labelled_fraction=0.01).num_labelled == 1
