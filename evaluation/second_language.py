"""Image retrieval from captions in the second synthetic language (uCLIP's target; input_pipeline/second_language.py).

On the first `num_examples` shapes test images and their captions, rendered in English and in the
second language, R@1/5/10 both ways for
- `clip_english/*`, `clip_second/*`: the CLIP text tower on the caption (the second language's words
  are unknown to it: its tokenizer splits them into pieces seen only inside other words);
- `uclip_english/*`, `uclip_second/*` (models with uCLIP's heads): Head_A on the frozen multilingual
  encoder's embedding of the caption against Head_B on the CLIP image embedding.
"""

from __future__ import annotations

import jax
import numpy as np

from evaluation.retrieval import retrieval_metrics
from input_pipeline import second_language, shapes, transforms
from input_pipeline.tokenizer import Tokenizer
from losses import uclip


def second_language_retrieval(
    model, params, tokenizer: Tokenizer, *, num_examples: int, image_size: int, max_len: int, mismatch: float
) -> dict[str, float]:
    """The metrics above; uCLIP's only where `params` has the heads (config.model.head_dim > 0)."""
    source = shapes.ShapesSource("test", num_examples, seed=0, image_size=image_size)
    records = [source[i] for i in range(num_examples)]
    images = transforms.normalize_image(np.stack([r["image"] for r in records]))
    captions = {"english": [r["caption"] for r in records]}
    captions["second"] = [second_language.translate(c) for c in captions["english"]]

    encode_image = jax.jit(lambda p, x: model.apply({"params": p}, x, method=model.encode_image)["image_embedding"])
    encode_text = jax.jit(lambda p, t: model.apply({"params": p}, t, method=model.encode_text)["text_embedding"])
    image_emb = np.asarray(encode_image(params, images))
    metrics = {}
    for language, texts in captions.items():
        text_emb = np.asarray(encode_text(params, tokenizer.encode(texts, max_len)))
        metrics.update(retrieval_metrics(image_emb, text_emb, prefix=f"clip_{language}/"))
    if "text_head" not in params:
        return metrics
    table = second_language.concept_table(image_emb.shape[1], mismatch)
    head_image = np.asarray(jax.jit(lambda p, x: uclip.head_b(model, p, x))(params, image_emb))
    for language, texts in captions.items():
        multilingual = second_language.encode(second_language.word_ids(texts, second_language.MAX_WORDS), table)
        head_text = np.asarray(jax.jit(lambda p, x: uclip.head_a(model, p, x))(params, multilingual))
        metrics.update(retrieval_metrics(head_image, head_text, prefix=f"uclip_{language}/"))
    return metrics
