"""Zero-shot prompts whose class words never occur in any training text (captions, rewrites, negatives).

"a photo of a ruby ball." names red circles with words the shapes data never uses, so only
a text tower that learned language elsewhere (a pretrained encoder: LiT, CLIP-from-pretrained) can
map them to the right images; a tower trained on the captions alone is left to guess from sub-words.
tests/test_novel_prompts.py checks that no word here occurs in the training texts.
"""

from evaluation import prompts
from input_pipeline import shapes

NOVEL_SHAPES = {
    "circle": ("ball", "orb"),
    "square": ("boxy tile", "quadrilateral with equal sides"),
    "triangle": ("tricorn", "pyramid outline"),
    "diamond": ("gem-shaped kite", "tilted quadrilateral"),
    "cross": ("addition symbol", "medic emblem"),
    "ring": ("hollow loop", "doughnut"),
    "star": ("asterisk", "pentagram"),
    "bar": ("rectangle", "elongated slab"),
}
NOVEL_COLOURS = {
    "red": ("ruby", "cherry-coloured"),
    "green": ("grass-coloured", "jade"),
    "blue": ("sapphire", "cobalt"),
    "yellow": ("canary", "sunflower-coloured"),
    "purple": ("lavender", "mauve"),
    "orange": ("pumpkin-coloured", "apricot"),
    "cyan": ("teal", "peacock-coloured"),
    "pink": ("fuchsia", "blush"),
}


def novel_class_prompts() -> dict[str, list[list[str]]]:
    """`novel_shape`, `novel_colour`, `novel_shape_colour` -> [num_classes][prompts]: the held-out templates of
    evaluation/prompts.py, filled with each class's unseen words (class order matches the dataset labels)."""
    shape_words = [NOVEL_SHAPES[s] for s in shapes.SHAPES]
    colour_words = [NOVEL_COLOURS[c] for c in shapes.COLOURS]
    return {
        "novel_shape": [[t.format(shape=w) for t in prompts.SHAPE_TEMPLATES for w in words] for words in shape_words],
        "novel_colour": [
            [t.format(colour=w) for t in prompts.COLOUR_TEMPLATES for w in words] for words in colour_words
        ],
        "novel_shape_colour": [
            [t.format(shape=s, colour=c) for t in prompts.SHAPE_COLOUR_TEMPLATES for s, c in zip(sw, cw, strict=True)]
            for sw in shape_words
            for cw in colour_words
        ],
    }
