"""config.evals is checked before jax starts (one sentence naming the key), every config's entries spell all
their type's options so the command line can set any, and the host inputs the trainer prepares for uCLIP come
from the training data, whatever it is."""

from __future__ import annotations

import io
import os
import pathlib
import re
import sys

import ml_collections
import numpy as np
import pytest
import real_data as rd
from absl import flags
from ml_collections import config_flags
from PIL import Image

from configs import clip, simcse, uclip
from configs.errors import ConfigError
from configs.evaluators import NAME_PREFIX, evaluator
from evaluation.eval_types import EVAL_TYPES, entry_options, validate_evals
from input_pipeline import second_language, shapes
from input_pipeline.transforms import normalize_image
from launch.command_line import parse_flags
from launch.sweep import load_config_file
from training import objective_inputs
from training.validation import validate_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _with_eval(**entry) -> ml_collections.ConfigDict:
    config = clip.get_config()
    config.evals.mine = ml_collections.ConfigDict(entry)
    return config


@pytest.mark.parametrize(
    "config, message",
    [
        (_with_eval(type="zero_shot"), "Unknown evaluator type 'zero_shot' in config.evals.mine.type; use one of"),
        (_with_eval(type="retrieval", pth="x"), "config.evals.mine.pth is not an option of the retrieval evaluator"),
        (_with_eval(type="retrieval", path=3), "config.evals.mine.path must be a str, not 3"),
        (_with_eval(type="sts", data="x"), "config.evals.mine.data is not an option of the sts evaluator"),
        (_with_eval(type="retrieval", path="/x.tar"), "config.evals.mine.data is 'shapes', which has no held-out"),
        (_with_eval(prefix="x/"), "config.evals.mine must be a ConfigDict with a `type`"),
    ],
    ids=["type", "option", "option_type", "option_of_another_type", "data_format", "no_type"],
)
def test_a_bad_evaluator_is_one_sentence_naming_the_key(config, message):
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace("[", r"\[")) as error:
        validate_config(config)
    assert str(error.value).count(". ") == 0 and str(error.value).endswith(".")


def test_text_runs_refuse_image_evaluators_and_default_to_sts():
    config = simcse.get_config()
    assert {name: entry.type for name, entry in config.evals.items()} == {"sts": "sts"}
    validate_config(config)
    config.evals.shapes = ml_collections.ConfigDict(dict(type="shapes_zero_shot"))
    with pytest.raises(ConfigError, match="config.evals.shapes \\(shapes_zero_shot\\) scores images"):
        validate_config(config)


def test_the_defaults_keep_the_shapes_evaluator_and_an_off_held_out_one():
    config = clip.get_config()
    validate_config(config)
    assert config.evals.shapes.to_dict() == {"type": "shapes_zero_shot", "prefix": ""}
    assert config.evals.heldout.type == "retrieval" and config.evals.heldout.path == ""


def _uclip_config(bank_size: int) -> ml_collections.ConfigDict:
    config = uclip.get_config()
    config.uclip.bank_size = bank_size
    config.model.embed_dim = 16
    config.data.update(image_size=16, cache_dir="")
    return config


def test_uclip_banks_come_from_the_training_files(tmp_path):
    """On a WebDataset: images of the first N usable examples, second-language captions of the next N."""
    bad = [example for example, _ in rd.bad_examples(100)[:3]]  # skipped: not in either bank
    good = rd.good_examples(8)
    for i, example in enumerate(good):
        example["txt"] = f"small red circle top left {i}".encode()  # shapes words, and one outside them
    rd.write_shard(tmp_path / "train.tar", bad[:1] + good[:3] + bad[1:] + good[3:])
    config = _uclip_config(4)
    config.data.update(name="webdataset", path=str(tmp_path / "train.tar"))
    inputs = objective_inputs.prepare_inputs(config, None)
    shapes_of = objective_inputs.input_shapes(config, None)
    assert {k: (v.shape, v.dtype) for k, v in inputs.items()} == {k: (v.shape, v.dtype) for k, v in shapes_of.items()}

    def pixels(i):  # decoded and centre-cropped by hand: flat colours survive any resampling up to JPEG noise
        image = Image.open(io.BytesIO(good[i]["jpg"])).convert("RGB")
        return np.asarray(image, np.float32).mean(axis=(0, 1))

    want = np.stack([normalize_image(pixels(i)) for i in range(4)])
    np.testing.assert_allclose(inputs["bank_images"].mean(axis=(1, 2)), want, atol=0.1)
    words = second_language.encoder_words()
    second = [second_language.dictionary()[w] for w in "small red circle top left".split()]
    for row, ids in enumerate(inputs["bank_words"]):
        assert [words[j] for j in ids if j >= 0] == second, row  # the number is no word of the encoder
    np.testing.assert_array_equal(inputs["concepts"], second_language.concept_table(16, config.uclip.mismatch))
    config.uclip.bank_size = 5
    with pytest.raises(ConfigError, match="config.uclip.bank_size=5 needs 10 usable examples .* holds 8"):
        objective_inputs.prepare_inputs(config, None)


def test_uclip_banks_on_the_embedded_data_are_the_validation_split_as_before():
    config = _uclip_config(3)
    inputs = objective_inputs.prepare_inputs(config, None)
    source = shapes.ShapesSource("validation", 6, seed=0, image_size=16)
    np.testing.assert_array_equal(
        inputs["bank_images"], normalize_image(np.stack([source[i]["image"] for i in range(3)]))
    )
    captions = [second_language.translate(source[i]["caption"]) for i in range(3, 6)]
    np.testing.assert_array_equal(inputs["bank_words"], second_language.word_ids(captions, second_language.MAX_WORDS))


# Every config file (configs/common.py and the other helpers have no get_config).
CONFIG_FILES = [
    f"configs/{path.name}"
    for path in sorted(pathlib.Path(ROOT, "configs").glob("*.py"))
    if "\ndef get_config(" in path.read_text()
]
# Config arguments that rebuild config.evals or return early around it.
CONFIG_ARGUMENTS = [
    "configs/clip.py:data=webdataset",
    "configs/denseclip.py:variant=pre",
    "configs/limber.py:data=jsonl",
    "configs/mend.py:stage=icl",
    "configs/salt.py:stage=teacher",
    "configs/simcse.py:mode=sup",
    "configs/space2.py:supervision=none",
]


@pytest.mark.parametrize("spec", CONFIG_FILES + CONFIG_ARGUMENTS)
def test_every_entry_of_every_config_spells_every_option_of_its_type(spec):
    """ml_collections refuses `--config.evals.<entry>.<option>=...` for a key the entry lacks, so every entry
    holds `type`, `prefix` and all of its type's options (docs/config.md: e.g. --config.evals.video.frames=4)."""
    config = load_config_file(os.path.join(ROOT, spec))[1]
    assert config.evals, spec
    for name, entry in config.evals.items():
        assert set(entry) == {"type", "prefix", *EVAL_TYPES[entry.type]}, f"{spec}: evals.{name}"


def test_evaluator_fills_in_the_defaults_under_the_given_options():
    assert evaluator("retrieval", prefix="", path="/v.tar").to_dict() == {
        "type": "retrieval", "prefix": "", "data": "", "path": "/v.tar", "split": "test",
    }  # fmt: skip
    assert evaluator("video").to_dict() == {"type": "video", "prefix": NAME_PREFIX, "frames": 0}
    for kind in EVAL_TYPES:  # the entry holds what the evaluators read (entry_options) and passes validation
        assert entry_options(evaluator(kind)) == evaluator(kind).to_dict()
    config = clip.get_config()
    config.evals.mine = evaluator("retrieval", prefix="mine/", split="validation")
    validate_config(config)


@pytest.mark.parametrize(
    "kind, options, message",
    [
        ("zero_shot", {}, "Unknown evaluator type 'zero_shot'; use one of ['captioning', "),
        ("video", dict(framez=4), "'framez' is not an option of the video evaluator; use one of ['frames', 'prefix']."),
    ],
    ids=["type", "option"],
)
def test_evaluator_refuses_an_unknown_type_or_option_in_one_sentence(kind, options, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)) as error:
        evaluator(kind, **options)
    assert str(error.value).count(". ") == 0 and str(error.value).endswith(".")


def _parse(monkeypatch, *args: str) -> ml_collections.ConfigDict:
    """`python main.py *args`'s config, parsed in this process by main.py's parse_flags on a --config flag of its own
    (main.py's flags are defined once a process, and importing main.py here would clash with the benchmark scripts'
    that other tests load: launch/command_line.py holds the parser alone)."""
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "Config file.", flag_values=values)
    argv = ["main.py", *args]
    monkeypatch.setattr(sys, "argv", argv)  # ml_collections reads the overrides from sys.argv
    parse_flags(argv, values)
    return values.config


@pytest.mark.parametrize(
    "spec, key, value",
    [
        ("configs/xclip.py", "evals.video.frames", 4),
        ("configs/clip.py", "evals.heldout.split", "validation"),
        ("configs/uclip.py", "evals.second_language.prefix", "l2/"),
        ("configs/lm.py", "evals.language.num_prompts", 3),
        ("configs/salt.py", "evals.language.prompt_words", 4),
    ],
)
def test_an_option_the_entry_left_at_its_default_is_set_from_the_command_line(monkeypatch, spec, key, value):
    config = _parse(monkeypatch, f"--config={os.path.join(ROOT, spec)}", f"--config.{key}={value}")
    node = config
    for part in key.split("."):
        node = node[part]
    assert node == value
    validate_evals(config, text_only=False)  # the entry as the trainer checks it (uCLIP and SALT need trained runs)


def test_an_option_of_no_type_is_still_one_sentence_naming_the_keys(monkeypatch):
    with pytest.raises(SystemExit) as error:
        _parse(monkeypatch, f"--config={os.path.join(ROOT, 'configs/xclip.py')}", "--config.evals.video.framez=4")
    assert str(error.value) == (
        "error: --config.evals.video.framez names the config key 'framez', which does not exist; use one of "
        "['frames', 'prefix', 'type']."
    )
