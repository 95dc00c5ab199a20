"""Which words of the zero-shot prompt templates reach each method's text tower in training (and the tokenizer),
as evaluation/prompts.py and docs/data.md state them.

The texts are recorded where they are tokenised: every image-text config's own TrainTransform (its
text augmentation and its objective's batch fields) over shapes training records, several draws each; X-CLIP's
video transform over training clips.
"""

import importlib
import pkgutil
import re

import numpy as np
import pytest

import configs
from evaluation import prompts
from input_pipeline import shape_video, shapes
from input_pipeline.pipeline import TrainTransform, VideoTrainTransform
from input_pipeline.sources import train_texts
from losses.objectives import get_objective
from training.text_task import is_text_data

RECORDS, DRAWS = 600, 4
IMAGE_TEXT_CONFIGS = (
    "clip", "laclip", "siglip", "lit", "dreamlip", "alip", "protoclip", "clip_hard_negatives", "degla",
    "clip_refine", "clip_continued", "proclip_stage1", "proclip", "uclip", "cloc", "denseclip", "coconut",
)  # fmt: skip


# The templates' content words, and those that each method's training text holds (all others: none).
TEMPLATE_WORDS = {"photo", "image", "showing", "picture", "one", "rendering", "something", "thing"}
IN_TRAINING = {"laclip": {"one"}, "dreamlip": {"picture"}, "alip": {"photo"}}
IN_TOKENIZER_CORPUS = {"image", "one", "photo", "picture"}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def _template_words() -> set[str]:
    """Words of the templates without their placeholders, articles and "of"."""
    templates = prompts.SHAPE_COLOUR_TEMPLATES + prompts.SHAPE_TEMPLATES + prompts.COLOUR_TEMPLATES
    return set().union(*(_words(re.sub(r"\{\w+\}", " ", t)) for t in templates)) - {"a", "an", "of"}


class _RecordingTokenizer:
    """Stands in for the tokenizer and keeps every text it is asked to encode."""

    def __init__(self):
        self.texts: list[str] = []

    def encode(self, texts, max_len):
        self.texts.extend(texts)
        return np.zeros((len(texts), max_len), np.int32)


@pytest.fixture(scope="module")
def records():
    source = shapes.ShapesSource("train", RECORDS, seed=0, image_size=8, cache_dir="")
    return [source[i] for i in range(RECORDS)]


def _trained_words(name: str, records) -> set[str]:
    config = importlib.import_module(f"configs.{name}").get_config()
    assert not is_text_data(config)
    if name == "coconut":  # the fields its experience's source adds (input_pipeline/class_incremental.py)
        records = [{**r, "class_label": r["shape"], "replay": np.False_} for r in records]
    tokenizer = _RecordingTokenizer()
    transform = TrainTransform(
        tokenizer, 8, config.data.text_augmentation, (1.0, 1.0), get_objective(config.objective).batch_fields
    )
    rng = np.random.default_rng(0)
    for record in records:
        for _ in range(DRAWS):
            transform.random_map(record, rng)
    return set().union(*map(_words, tokenizer.texts)) & _template_words()


VIDEO_CONFIGS = ("xclip",)
VIDEO_TEMPLATE_WORDS = {"video", "clip", "showing", "footage", "recording", "something", "thing", "object", "one"}


def _video_template_words() -> set[str]:
    templates = prompts.MOTION_TEMPLATES + prompts.VIDEO_SHAPE_TEMPLATES + prompts.VIDEO_COLOUR_TEMPLATES
    return set().union(*(_words(re.sub(r"\{\w+\}", " ", t)) for t in templates)) - {"a", "an", "of"}


def test_xclip_trains_on_no_template_word():
    assert _video_template_words() == VIDEO_TEMPLATE_WORDS
    source = shape_video.ShapesVideoSource("train", RECORDS // 2, seed=0, image_size=16, cache_dir="")
    tokenizer, rng = _RecordingTokenizer(), np.random.default_rng(0)
    transform = VideoTrainTransform(tokenizer, 8, 4, get_objective("xclip").batch_fields)
    for index in range(len(source)):
        transform.random_map(source[index], rng)
    assert set().union(*map(_words, tokenizer.texts)) & (_template_words() | VIDEO_TEMPLATE_WORDS) == set()


def test_every_image_text_config_is_checked():
    modules = {m.name: importlib.import_module(f"configs.{m.name}") for m in pkgutil.iter_modules(configs.__path__)}
    # Captioners (LiMBeR, CLOSE) score words of the captions they generate, with no prompt templates.
    image_text = {
        n
        for n, m in modules.items()
        if hasattr(m, "get_config") and not is_text_data(m.get_config()) and m.get_config().model.kind == "two_tower"
    }
    assert image_text == set(IMAGE_TEXT_CONFIGS) | set(VIDEO_CONFIGS)


def test_template_words_are_those_documented():
    assert _template_words() == TEMPLATE_WORDS


@pytest.mark.parametrize("name", IMAGE_TEXT_CONFIGS)
def test_template_words_each_method_trains_on(name, records):
    assert _trained_words(name, records) == IN_TRAINING.get(name, set())


def test_laclip_draws_degenerate_rewrites_only_as_the_original(records):
    # "image" is one of the data's one-word rewrites; LaCLIP's rule replaces a pick of < 2 words by
    # the original caption, so it reaches the tokenizer's corpus but never the text tower.
    assert any("image" in record["rewrites"] for record in records)
    assert "image" not in _trained_words("laclip", records)


def test_tokenizer_corpus_holds_every_field(records):
    corpus_words = set().union(*map(_words, train_texts(records)))
    assert corpus_words & _template_words() == IN_TOKENIZER_CORPUS
