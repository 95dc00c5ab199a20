"""The novel-word zero-shot prompts use no word that any training text of the shapes data contains."""

import re

from evaluation import novel_prompts
from input_pipeline import shapes


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def test_no_novel_class_word_occurs_in_training_text():
    source = shapes.ShapesSource("train", 1500, seed=0, image_size=16, cache_dir="")
    seen: set[str] = set()
    for i in range(len(source)):
        record = source[i]
        for field in shapes.TEXT_FIELDS:
            value = record.get(field)
            for text in [value] if isinstance(value, str) else list(value or ()):
                seen |= _words(text)
    assert {"circle", "crimson", "scarlet", "disc"} <= seen  # the reference vocabulary is really there
    for words in [*novel_prompts.NOVEL_SHAPES.values(), *novel_prompts.NOVEL_COLOURS.values()]:
        for phrase in words:
            assert not (_words(phrase) & seen), f"{phrase!r} shares {_words(phrase) & seen} with training text"


def test_prompt_sets_have_one_row_per_class_in_label_order():
    sets = novel_prompts.novel_class_prompts()
    assert [len(sets[k]) for k in ("novel_shape", "novel_colour", "novel_shape_colour")] == [8, 8, 64]
    assert sets["novel_shape_colour"][0][0] == "a photo of a ruby ball."
    assert all(len(row) == len(sets["novel_shape"][0]) for row in sets["novel_shape"])
