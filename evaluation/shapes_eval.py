"""The shapes evaluation: zero-shot shape / colour / shape+colour and retrieval on held-out test images."""

from __future__ import annotations

import jax
import numpy as np

from evaluation import binding_eval, compositionality, modality_gap, novel_prompts, prompts, retrieval, zero_shot
from input_pipeline import shapes, transforms
from input_pipeline.tokenizer import Tokenizer


def batched(fn, inputs: np.ndarray, batch_size: int) -> np.ndarray:
    """Applies `fn` to row chunks of `inputs` ([N, ...]) and concatenates the results (arrays, or dicts of
    them). Every chunk is padded to `batch_size` rows (copies of its first), so a jitted `fn` compiles once,
    not once per leftover size; `fn` must treat rows independently."""
    outputs = []
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start : start + batch_size]
        rows = len(chunk)
        if rows < batch_size:
            chunk = np.concatenate([chunk, np.repeat(chunk[:1], batch_size - rows, axis=0)])
        outputs.append(jax.tree.map(lambda x, rows=rows: np.asarray(x)[:rows], fn(chunk)))
    return jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)


class ShapesEvaluator:
    """`evaluate(params) -> {metric: value}` over the first `num_examples` test images.

    Metrics: `zero_shot/{shape,colour,shape_colour}` top-1 accuracy with the held-out
    templates of evaluation/prompts.py, and `zero_shot/novel_*` the same with class words that never occur
    in training text (evaluation/novel_prompts.py: where a pretrained text tower should shine);
    `retrieval/*` R@1/5/10 both ways against the original captions in CLIP_benchmark's definition (an
    image's own caption is its one positive: m copies of a caption string tie, each first among them
    with probability 1/m; 582 of the 1,000 default test images share their caption string);
    `retrieval_same_text/*` the same where any caption with the image's caption string counts;
    `retrieval_rewrites/*` the same as `retrieval/*` against the first paraphrase
    (robustness to rephrasing, which LaCLIP's augmentation targets); `compositional/*` how often an
    image prefers its caption to each kind of minimally changed false caption (shapes.HARD_NEGATIVE_TYPES)
    and their `mean`; `geometry/*` the modality gap, alignment and uniformity of image and caption
    embeddings (CLIP-Refine's diagnostics); `binding/*` and `binding_rewrites/*` the same choice where the
    false caption binds the true one's words differently (evaluation/binding_eval.py), on
    `num_examples // 2` images per binding kind.
    """

    def __init__(
        self, model, tokenizer: Tokenizer, *, num_examples: int, batch_size: int, image_size: int, max_len: int
    ):
        source = shapes.ShapesSource("test", num_examples, seed=0, image_size=image_size)
        records = [source[i] for i in range(num_examples)]
        self.images = transforms.normalize_image(np.stack([r["image"] for r in records]))
        self.labels = {k: np.array([r[k] for r in records]) for k in ("shape", "colour", "shape_colour")}
        self.caption_strings = [r["caption"] for r in records]
        self.captions = tokenizer.encode(self.caption_strings, max_len)
        paraphrases = [r["rewrites"][0] if len(r["rewrites"][0].split()) >= 2 else r["caption"] for r in records]
        self.rewrites = tokenizer.encode(paraphrases, max_len)
        self.hard_negatives = tokenizer.encode([n for r in records for n in r["hard_negatives"]], max_len)
        self.prompts = {
            name: tokenizer.encode([p for per_class in classes for p in per_class], max_len).reshape(
                len(classes), len(classes[0]), max_len
            )
            for name, classes in {**prompts.class_prompts(), **novel_prompts.novel_class_prompts()}.items()
        }
        self.batch_size = batch_size
        self._encode_image = jax.jit(
            lambda p, x: model.apply({"params": p}, x, method=model.encode_image)["image_embedding"]
        )
        self._encode_text = jax.jit(
            lambda p, t: model.apply({"params": p}, t, method=model.encode_text)["text_embedding"]
        )
        binding = binding_eval.binding_set(binding_eval.trainer_examples_per_kind(num_examples), image_size)
        self.binding = binding_eval.BindingSet(  # as the towers read it: normalised images, token ids
            transforms.normalize_image(binding.images),
            {prefix: tokenizer.encode(texts, max_len) for prefix, texts in binding.texts.items()},
        )

    def evaluate(self, params) -> dict[str, float]:
        image_emb = batched(lambda x: self._encode_image(params, x), self.images, self.batch_size)
        text = lambda t: batched(lambda x: self._encode_text(params, x), t, self.batch_size)  # noqa: E731
        metrics = {}
        for name, tokens in self.prompts.items():
            classes, templates, length = tokens.shape
            prompt_emb = text(tokens.reshape(-1, length)).reshape(classes, templates, -1)
            metrics[f"zero_shot/{name}"] = zero_shot.zero_shot_accuracy(
                image_emb, zero_shot.class_embeddings(prompt_emb), self.labels[name.removeprefix("novel_")]
            )
        caption_emb = text(self.captions)
        metrics.update(retrieval.retrieval_metrics(image_emb, caption_emb, prefix="retrieval/"))
        same_text = retrieval.same_text_positives(self.caption_strings)
        metrics.update(retrieval.retrieval_metrics(image_emb, caption_emb, "retrieval_same_text/", same_text))
        metrics.update(retrieval.retrieval_metrics(image_emb, text(self.rewrites), prefix="retrieval_rewrites/"))
        negatives = text(self.hard_negatives).reshape(len(image_emb), len(shapes.HARD_NEGATIVE_TYPES), -1)
        selection = compositionality.caption_selection_accuracy(
            image_emb, caption_emb, negatives, shapes.HARD_NEGATIVE_TYPES
        )
        metrics.update({f"compositional/{k}": v for k, v in selection.items()})
        geometry = modality_gap.embedding_geometry(image_emb, caption_emb)
        metrics.update({f"geometry/{k}": v for k, v in geometry.items()})
        images = lambda x: batched(lambda c: self._encode_image(params, c), x, self.batch_size)  # noqa: E731
        metrics.update(binding_eval.evaluate_binding(self.binding, images, text))
        return metrics
