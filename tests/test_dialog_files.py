"""Your dialog files for SPACE-2 (input_pipeline/dialog_files.py): lines read, bad ones counted, records built,
and the method trained and evaluated on them through the real trainer."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest

from configs import space2 as space2_config
from configs.errors import ConfigError
from input_pipeline.dialog_files import DialogFileSource, read_dialogs
from input_pipeline.dialog_frames import VIEWS, Frame, command, item_id
from training.loop import train_and_evaluate
from training.validation import validate_config

LINES = [
    {"text": "book a table for two", "domain": "restaurant", "intent": "book", "slots": {"people": "two"}},
    {"text": "play jazz and blues", "intent": "play", "slots": {"genre": ["jazz", "blues"]}},
    {"text": "is there parking nearby"},
    "not json {",
    {"intent": "book"},
    {"text": "cancel it", "intent": "cancel", "slots": {"time": 8}},
    {"text": "   "},
]


def _write(path, rows) -> str:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return str(path)


def test_lines_are_read_and_bad_ones_counted(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    labelled, unlabelled = read_dialogs(_write(tmp_path / "d.jsonl", LINES))
    assert labelled == [
        ("book a table for two", Frame("restaurant", "book", (("people", "two"),))),
        ("play jazz and blues", Frame("", "play", (("genre", "blues"), ("genre", "jazz")))),
    ]
    assert unlabelled == ["is there parking nearby"]
    text = caplog.text
    assert "Skipped 1 unusable lines" in text and "(malformed JSON line)" in text
    assert "Skipped 2 unusable lines" in text and "(line without a text string)" in text
    assert "(intent, domain or slots of a wrong type)" in text


def test_a_file_without_labelled_lines_names_the_fix(tmp_path):
    with pytest.raises(ValueError, match='give some lines an "intent"'):
        read_dialogs(_write(tmp_path / "d.jsonl", [{"text": "hello"}]))


def test_records_pair_labelled_and_unlabelled_lines():
    labelled = [
        ("book a table for two", Frame("restaurant", "book", (("people", "two"),))),
        ("play jazz and blues", Frame("", "play", (("genre", "blues"), ("genre", "jazz")))),
    ]
    source = DialogFileSource(labelled, ["a", "b", "c"], views=("D", "V", "ISV"))
    assert len(source) == 3
    record = source[1]
    assert record["text"] == "play jazz and blues" and record["unlabelled"] == "b"
    # Width 2: the most items of any view (two values of "genre"); no domain, no D item.
    want = np.array(
        [[-1, -1], sorted([item_id("V", "blues"), item_id("V", "jazz")]),
         sorted([item_id("ISV", "play-genre-blues"), item_id("ISV", "play-genre-jazz")])], np.int32,
    )  # fmt: skip
    np.testing.assert_array_equal(record["frame"], want)
    assert source[2]["text"] == source[0]["text"]  # the labelled lines cycle
    assert DialogFileSource(labelled, [])[1]["unlabelled"] == "play jazz and blues"  # none unlabelled: theirs
    with pytest.raises(IndexError):
        source[3]


def _dialog_file(path, size: int) -> str:
    rows = []
    for i in range(size):
        text, frame = command(1, "file", i)
        rows.append({"text": text, "domain": frame.domain, "intent": frame.intent, "slots": dict(frame.slots)})
        rows.append({"text": command(1, "file_unlabelled", i)[0]})
    return _write(path, rows)


def test_space2_trains_on_your_dialogs_and_probes_your_held_out_lines(tmp_path):
    config = space2_config.get_config()
    config.data.update(name="dialogs", path=_dialog_file(tmp_path / "train.jsonl", 40))
    config.evals.dialog.path = _dialog_file(tmp_path / "held_out.jsonl", 60)
    config.total_steps = config.eval_every_steps = config.checkpoint_every_steps = 2
    config.batch_size, config.text.vocab_size = 8, 400
    config.model.text.update(width=32, depth=1, heads=2)
    config.model.embed_dim = 16
    validate_config(config)
    summary = train_and_evaluate(config, str(tmp_path / "run"))
    assert math.isfinite(summary["final_loss"])
    assert 0 <= summary["eval"]["dialog/intent_1shot"] <= 100 and "dialog/slot_f1" in summary["eval"]
    assert VIEWS == tuple(config.space2.views)


def test_held_out_dialogs_are_checked_before_jax_starts(tmp_path):
    config = space2_config.get_config()
    config.evals.dialog.path = str(tmp_path / "missing.jsonl")
    with pytest.raises(ConfigError, match=r"^config.evals.dialog.path '.*missing.jsonl' is not a file"):
        validate_config(config)
    config.evals.dialog.path = ""
    config.data.update(name="dialogs", path=_dialog_file(tmp_path / "train.jsonl", 4))
    with pytest.raises(ConfigError, match=r"this run trains on your dialogs; set config.evals.dialog.path"):
        validate_config(config)
