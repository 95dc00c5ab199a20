"""Semantic segmentation evaluation (DenseCLIP): mIoU on the masks of held-out shapes images, or of your files.

The shapes images are the first `num_examples` of the shapes `validation` split at seed SEGMENTATION_EVAL_SEED (1-3
objects each in layouts never trained on); each pixel's class is its object's under the run's class names
(config.denseclip.class_names; background and the 8 shapes for a run without them). Your files (a held-out split
with masks beside the images, input_pipeline/masks.py) give their first `num_examples` usable examples, the
central square of image and mask (evaluation/evaluators.py). mIoU is mmseg's: per class,
the intersection over the union of predicted and true pixels summed over every image, averaged over the classes
that occur in the labels or the predictions. Metrics (fractions):
- `segmentation/miou`: the segmentation head, fine-tuned on the training masks (DenseCLIP runs);
- `segmentation/score_miou`: the argmax of the pixel-text score map, the learned prompts' class embeddings (after
  the context decoder) against each patch (DenseCLIP runs);
- `segmentation/clip_miou`: the plain CLIP baseline, zero-shot: each patch token through the image projection
  against the class names in the held-out zero-shot templates (evaluation/prompts.py SHAPE_TEMPLATES, averaged),
  upsampled; any two-tower run has it;
- `segmentation/chance_miou`: a class drawn uniformly per pixel (one fixed draw);
  `segmentation/background_miou`: every pixel background (when a class is named "background").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from evaluation.prompts import SHAPE_TEMPLATES
from evaluation.shapes_eval import batched
from evaluation.zero_shot import class_embeddings
from input_pipeline import segmentation, shapes, transforms
from input_pipeline.tokenizer import Tokenizer
from models.dense_heads import upsample

SEGMENTATION_EVAL_SEED = 11  # another seed's validation split than any training or other evaluator draws from


def mean_iou(predicted: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """mIoU of class ids predicted [...] against labels [...] (IGNORE pixels left out), over the classes present
    in either."""
    valid = labels != segmentation.IGNORE
    p, y = predicted[valid].astype(np.int64), labels[valid].astype(np.int64)
    intersection = np.bincount(y[p == y], minlength=num_classes)
    union = np.bincount(p, minlength=num_classes) + np.bincount(y, minlength=num_classes) - intersection
    present = union > 0
    return float(np.mean(intersection[present] / union[present]))


def shapes_masks(class_names: tuple[str, ...], num_examples: int, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images [N, S, S, 3], int32 class ids [N, S, S]) of the held-out shapes images (module docstring)."""
    table = segmentation.shapes_class_table(class_names)
    examples = [shapes.make_example(SEGMENTATION_EVAL_SEED, "validation", i, image_size) for i in range(num_examples)]
    labels = [segmentation.segmentation_map(e, table) for e in examples]
    return np.stack([e["image"] for e in examples]), np.stack(labels)


class SegmentationEvaluator:
    """`evaluate(params) -> {metric: value}` (module docstring) on uint8 `images` [N, S, S, 3] with class ids
    `labels` [N, S, S] (IGNORE: no class)."""

    def __init__(self, model, tokenizer: Tokenizer, class_names: tuple[str, ...], images: np.ndarray,
                 labels: np.ndarray, *, batch_size: int, max_len: int):  # fmt: skip
        self.images = transforms.normalize_image(images)
        self.labels = labels
        self.num_classes, self.batch_size, self.dense = len(class_names), batch_size, model.dense
        prompts = [t.format(shape=name) for name in class_names for t in SHAPE_TEMPLATES]
        self.prompt_tokens = tokenizer.encode(prompts, max_len)
        if self.dense:
            self.class_tokens = segmentation.class_name_tokens(
                tokenizer, class_names, max_len, model.dense.context_tokens
            )
        draw = np.random.default_rng(0).integers(0, self.num_classes, self.labels.shape)
        self.fixed = {"segmentation/chance_miou": mean_iou(draw, self.labels, self.num_classes)}
        if segmentation.BACKGROUND in class_names:
            background = np.full_like(self.labels, class_names.index(segmentation.BACKGROUND))
            self.fixed["segmentation/background_miou"] = mean_iou(background, self.labels, self.num_classes)
        side = images.shape[1]
        variables = lambda p: {"params": p}  # noqa: E731
        argmax_at = lambda scores: jnp.argmax(upsample(scores, side, side), axis=-1)  # noqa: E731

        def patch_classes(params, images, class_embedding):
            patches = model.apply(variables(params), images, patch_embeddings=True, method=model.encode_image)
            patches = patches["patch_embedding"]
            grid = int(round(patches.shape[1] ** 0.5))
            return argmax_at((patches @ class_embedding.T).reshape(images.shape[0], grid, grid, -1))

        def dense_classes(params, images):
            out = model.apply(variables(params), images, self.class_tokens, method=model.segment)
            return jnp.stack([argmax_at(out["seg_logits"]), argmax_at(out["score_map"])], axis=1)

        self._patch_classes = jax.jit(patch_classes)
        self._dense_classes = jax.jit(dense_classes)
        self._encode_text = jax.jit(
            lambda p, t: model.apply(variables(p), t, method=model.encode_text)["text_embedding"]
        )

    def evaluate(self, params) -> dict[str, float]:
        prompts = np.asarray(self._encode_text(params, self.prompt_tokens))
        class_embedding = class_embeddings(prompts.reshape(self.num_classes, len(SHAPE_TEMPLATES), -1))
        zero_shot = batched(lambda x: self._patch_classes(params, x, class_embedding), self.images, self.batch_size)
        metrics = {**self.fixed, "segmentation/clip_miou": mean_iou(zero_shot, self.labels, self.num_classes)}
        if self.dense:
            classes = batched(lambda x: self._dense_classes(params, x), self.images, self.batch_size)
            head, scores = classes[:, 0], classes[:, 1]
            metrics["segmentation/miou"] = mean_iou(head, self.labels, self.num_classes)
            metrics["segmentation/score_miou"] = mean_iou(scores, self.labels, self.num_classes)
        return metrics
