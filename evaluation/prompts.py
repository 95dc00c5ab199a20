"""Zero-shot prompt templates for the shapes labels.

Their wording ("photo", "image", "showing", "picture", "one", "rendering", "something", "thing")
never reaches the text tower of CLIP, SigLIP, ProtoCLIP, the hard-negative methods (DeGLA,
clip_hard_negatives), CLIP-Refine, ProCLIP, uCLIP or continued CLIP in training: their text is the
alt-text caption (and its perturbations). Three methods train on some of it, in text that carries no
class: LaCLIP on "one" (rewrites such as "one disc, small and red"; the one-word rewrite "image" is
replaced by the original caption before it is tokenised), DreamLIP on "picture" (every long
caption's scene sentence "The picture contains 2 objects on a grey textured background.") and ALIP on
"photo" (a junk word of the noisy raw captions). LiT's text tower was pretrained on general English,
where all of them are common. Whatever the method, the SentencePiece tokenizer is fitted to every
text field, "image", "one", "photo" and "picture" included. tests/test_prompt_words.py checks this.
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


# Clips (evaluation/video_eval.py): their wording ("video", "clip", "showing", "footage", "recording", "something",
# "thing", "object") never reaches X-CLIP's text tower in training, whose captions are "<colour> <shape> <motion>".
MOTION_TEMPLATES = (
    "a video of something {motion}.",
    "a clip showing a thing {motion}.",
    "footage of an object {motion}.",
    "a recording of something {motion}.",
)
VIDEO_SHAPE_TEMPLATES = (
    "a video of a {shape}.",
    "a clip showing a {shape}.",
    "footage of one {shape}.",
    "a recording of a {shape}.",
)
VIDEO_COLOUR_TEMPLATES = (
    "a video of something {colour}.",
    "a clip showing a {colour} thing.",
    "footage of a {colour} object.",
    "a recording of something {colour}.",
)
