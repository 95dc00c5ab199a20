"""Zero-shot prompt templates for the shapes labels.

None of these templates' wording ("photo", "image", "picture", "rendering",
"showing", "something") occurs in any training caption or rewrite, so zero-shot
accuracy measures transfer to new phrasings, not memorised strings.
"""

from input_pipeline import shapes

SHAPE_COLOUR_TEMPLATES = (
    "a photo of a {colour} {shape}.",
    "an image showing a {colour} {shape}.",
    "a picture of one {colour} {shape}.",
    "a rendering of a {colour} {shape}.",
)
SHAPE_TEMPLATES = (
    "a photo of a {shape}.",
    "an image showing a {shape}.",
    "a picture of one {shape}.",
    "a rendering of a {shape}.",
)
COLOUR_TEMPLATES = (
    "a photo of something {colour}.",
    "an image showing something {colour}.",
    "a picture of a {colour} thing.",
    "a rendering of something {colour}.",
)


def class_prompts() -> dict[str, list[list[str]]]:
    """Label name -> [num_classes][num_templates] prompts; class order matches the dataset labels."""
    return {
        "shape": [[t.format(shape=s) for t in SHAPE_TEMPLATES] for s in shapes.SHAPES],
        "colour": [[t.format(colour=c) for t in COLOUR_TEMPLATES] for c in shapes.COLOURS],
        "shape_colour": [
            [t.format(shape=s, colour=c) for t in SHAPE_COLOUR_TEMPLATES] for s in shapes.SHAPES for c in shapes.COLOURS
        ],
    }
