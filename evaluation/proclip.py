"""Retrieval with ProCLIP's text path (losses/proclip.py) next to the CLIP text tower's, on the shapes test set.

On the first `num_examples` test images and their captions, R@1/5/10 both ways for
- `clip/*`: the model's own text tower (what the trainer's evaluation scores);
- `proclip/*` (models with the MLP, config.model.head_dim > 0): normalize(MLP(G(caption))), G the frozen
  embedder of config.proclip.
"""

from __future__ import annotations

import jax
import numpy as np

from evaluation.retrieval import retrieval_metrics
from input_pipeline import shapes, transforms
from input_pipeline.tokenizer import Tokenizer
from losses import proclip


def proclip_retrieval(
    model, params, config, tokenizer: Tokenizer, *, num_examples: int, inputs: dict | None = None
) -> dict[str, float]:
    """The metrics above; `config` is the run's (it names the embedder), `inputs` the embedder the trainer
    read for it (training/objective_inputs.py; none: a fresh one from proclip.embedder_seed)."""
    source = shapes.ShapesSource("test", num_examples, seed=0, image_size=config.data.image_size)
    records = [source[i] for i in range(num_examples)]
    images = transforms.normalize_image(np.stack([r["image"] for r in records]))
    tokens = tokenizer.encode([r["caption"] for r in records], config.model.text.max_len)
    out = jax.jit(lambda p: model.apply({"params": p}, images, tokens))(params)
    metrics = retrieval_metrics(np.asarray(out["image_embedding"]), np.asarray(out["text_embedding"]), prefix="clip/")
    if "text_head" in params and "proclip" in config:
        embedder = proclip.load_embedder(config, params, inputs)
        text = jax.jit(lambda p, e: proclip.proclip_text_embedding(model, p, e, tokens))(params, embedder)
        metrics.update(retrieval_metrics(np.asarray(out["image_embedding"]), np.asarray(text), prefix="proclip/"))
    return metrics
