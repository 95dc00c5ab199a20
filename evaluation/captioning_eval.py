"""The `captioning` evaluator of a captioner (LiMBeR, CLOSE; models/captioner.py): captions generated for the
held-out shapes test images (one object each) from the frozen CLIP run's image embeddings, by
config.generation's decoding. Metrics, under captioning/:
- colour, shape, colour_shape: percent of captions whose first colour word and first shape word (a canonical
  word or any paraphrase of input_pipeline/shapes.py) name the image's; chance_colour, chance_shape,
  chance_colour_shape: a caption naming a uniformly drawn colour and shape (12.5, 12.5, 1.6);
- clip_score: CLIP-S (Hessel et al. 2021), 100 x 2.5 max(cos(image, caption), 0) under the frozen CLIP run,
  averaged over the images; reference_clip_score: the same for the images' true captions;
- text_colour, text_shape, text_colour_shape: the same words for captions generated from the held-out captions'
  own CLIP text embeddings (the modality a CLOSE captioner trained on);
- modality_gap: |mean image embedding - mean text embedding| over the held-out pairs (CLOSE's measure).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from evaluation.language_eval import until_eos
from input_pipeline import shapes
from models.captioner import PrefixCaptioner
from models.generation import BOS_ID, PAD_ID, Decoding, generate
from training.trained_runs import frozen_encoders

CLIP_S_WEIGHT = 2.5  # Hessel et al.'s w


def _phrases(names: Sequence[str]) -> dict[str, int]:
    """Every word or paraphrase of `names` (colours or shapes) -> its index."""
    return {phrase: i for i, name in enumerate(names) for phrase in (name, *shapes._SYNONYMS[name])}


COLOUR_PHRASES, SHAPE_PHRASES = _phrases(shapes.COLOURS), _phrases(shapes.SHAPES)
# Longest first, so that "five-pointed star" is one mention, not "star".
_MENTION = re.compile(
    r"(?<![\w-])(" + "|".join(map(re.escape, sorted({**COLOUR_PHRASES, **SHAPE_PHRASES}, key=len, reverse=True)))
    + r")(?![\w-])"
)  # fmt: skip


def first_mentions(text: str) -> tuple[int | None, int | None]:
    """(index of the first colour named in `text`, of the first shape), None where none is named."""
    colour = shape = None
    for match in _MENTION.finditer(text.lower()):
        phrase = match.group(1)
        if colour is None and phrase in COLOUR_PHRASES:
            colour = COLOUR_PHRASES[phrase]
        if shape is None and phrase in SHAPE_PHRASES:
            shape = SHAPE_PHRASES[phrase]
    return colour, shape


def attribute_accuracy(captions: Sequence[str], colours: np.ndarray, shape_ids: np.ndarray) -> dict[str, float]:
    """Percent of captions whose first colour, first shape, and both, are the image's (colours, shape_ids [N])."""
    named = [first_mentions(c) for c in captions]
    colour_ok = np.array([c == int(t) for (c, _), t in zip(named, colours, strict=True)])
    shape_ok = np.array([s == int(t) for (_, s), t in zip(named, shape_ids, strict=True)])
    return {
        "colour": 100.0 * colour_ok.mean(),
        "shape": 100.0 * shape_ok.mean(),
        "colour_shape": 100.0 * (colour_ok & shape_ok).mean(),
    }


def clip_score(image_embeddings: np.ndarray, text_embeddings: np.ndarray) -> float:
    """Mean CLIP-S of paired unit-norm embeddings [N, D]."""
    cosine = np.sum(image_embeddings * text_embeddings, axis=-1)
    return float(100.0 * CLIP_S_WEIGHT * np.mean(np.maximum(cosine, 0.0)))


class CaptioningEvaluator:
    """`evaluate(params)` of a PrefixCaptioner on `num_examples` held-out shapes images."""

    def __init__(self, model: PrefixCaptioner, tokenizer, clip_workdir: str, generation, *, num_examples: int,
                 batch_size: int, cache_dir: str = ""):  # fmt: skip
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.clip, clip_config, _ = frozen_encoders(clip_workdir)
        size = clip_config.data.image_size
        records = list(shapes.ShapesSource("test", num_examples, seed=0, image_size=size, cache_dir=cache_dir or None))
        self.true_captions = [shapes.scene_sentences(r) for r in records]
        self.colours = np.array([r["colour"] for r in records])
        self.shapes = np.array([r["shape"] for r in records])
        self.image_embeddings = self.clip.images(np.stack([r["image"] for r in records]))[1]
        self.text_embeddings = self.clip.texts(self.true_captions)
        self.decoding = Decoding(**dict(generation))
        self._prefix = jax.jit(lambda params, features: model.apply({"params": params}, features, method=model.prefix))
        self.description = (
            f"captions of {num_examples} held-out shapes images from the CLIP run {clip_workdir} "
            f"({generation.strategy}, {generation.max_new_tokens} tokens at most)"
        )

    def captions(self, params, features: np.ndarray) -> list[str]:
        """Generated captions for CLIP embeddings [N, D], in batches (the last padded so one compile serves)."""
        rows = []
        for start in range(0, len(features), self.batch_size):
            chunk = features[start : start + self.batch_size]
            padded = np.concatenate([chunk, np.repeat(chunk[:1], self.batch_size - len(chunk), axis=0)])
            prefix = self._prefix(params, jnp.asarray(padded))
            tokens = np.full((self.batch_size, 1), BOS_ID, np.int32)
            new = generate(self.model.lm, params["lm"], tokens, tokens != PAD_ID, jax.random.PRNGKey(start),
                           self.decoding, prefix=prefix)  # fmt: skip
            rows.extend(np.asarray(new)[: len(chunk)])
        return [self.tokenizer.decode(until_eos(row)) for row in rows]

    def evaluate(self, params) -> dict[str, float]:
        from_images = self.captions(params, self.image_embeddings)
        from_texts = self.captions(params, self.text_embeddings)
        metrics = {f"captioning/{k}": v for k, v in attribute_accuracy(from_images, self.colours, self.shapes).items()}
        text = attribute_accuracy(from_texts, self.colours, self.shapes)
        metrics.update({f"captioning/text_{k}": v for k, v in text.items()})
        metrics["captioning/clip_score"] = clip_score(self.image_embeddings, self.clip.texts(from_images))
        metrics["captioning/reference_clip_score"] = clip_score(self.image_embeddings, self.text_embeddings)
        gap = self.image_embeddings.mean(0) - self.text_embeddings.mean(0)
        metrics["captioning/modality_gap"] = float(np.linalg.norm(gap))
        colours, shape_count = len(shapes.COLOURS), len(shapes.SHAPES)
        metrics.update({
            "captioning/chance_colour": 100.0 / colours,
            "captioning/chance_shape": 100.0 / shape_count,
            "captioning/chance_colour_shape": 100.0 / (colours * shape_count),
        })  # fmt: skip
        return metrics
