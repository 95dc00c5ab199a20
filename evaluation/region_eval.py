"""Region-level evaluation (CLOC): region classification and caption grounding on held-out multi-object images.

The images are the first `num_examples` of the shapes `validation` split at seed REGION_EVAL_SEED (1-3 objects
each, never trained on); every object is a region with its true box and its region caption, one of the
128 "<size> <colour> <shape>" strings. Metrics (fractions; chance and the prompter-free baseline beside):
- `regions/caption_top1`: the region embedding from the box prompt (the model's prompter) picks its caption
  among the 128; `regions/colour_shape`: the picked caption has the right colour and shape;
- `regions/roi_caption_top1`, `regions/roi_colour_shape`: the same for the baseline embedding, the patch
  tokens under the box averaged by overlap and projected (models/region_heads.py `roi_mean`; any CLIP run has it);
- `regions/chance_caption` 1/128, `regions/chance_colour_shape` 1/64;
- `grounding/iou50`: over regions whose caption names one object of its image alone, the grounding head's box
  from (image, caption) has IoU >= 0.5 with the true box; `grounding/mean_iou` its mean IoU;
- `grounding/roi_iou50`: the baseline picks, among CANDIDATES (the box of a small and of a large object centred
  in each of the 9 grid cells), the one whose RoI embedding best matches the caption;
  `grounding/roi_ceiling`: the rate of regions that some candidate covers at IoU >= 0.5 (the baseline's best);
  `grounding/chance`: a candidate drawn uniformly at random (in expectation).
The prompter and grounding metrics need config.model.region_depth > 0; the rest run on any two-tower model.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from input_pipeline import shapes, transforms
from input_pipeline.shape_drawing import COLOURS, SHAPES, object_radius
from input_pipeline.tokenizer import Tokenizer

REGION_EVAL_SEED = 7  # the held-out images: another seed's validation split than any training draws from
CLASSES = tuple(" ".join(words) for words in itertools.product(shapes.SIZES, COLOURS, SHAPES))  # region captions


def candidate_boxes() -> np.ndarray:
    """[18, 4]: the box of an object of each size centred in each of the 9 grid cells."""
    boxes = []
    for cell, size in itertools.product(range(9), range(2)):
        row, col = divmod(cell, 3)
        half = object_radius(size) / 3
        cx, cy = (col + 0.5) / 3, (row + 0.5) / 3
        boxes.append((cx - half, cy - half, cx + half, cy + half))
    return np.array(boxes, np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of broadcastable boxes [..., 4] (x0, y0, x1, y1)."""
    low, high = np.maximum(a[..., :2], b[..., :2]), np.minimum(a[..., 2:], b[..., 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=-1)
    area = lambda x: np.prod(np.clip(x[..., 2:] - x[..., :2], 0, None), axis=-1)  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-12)


def regions_of(examples: list[dict]) -> dict[str, np.ndarray]:
    """Columns of the examples' regions, padded to shapes.MAX_OBJECTS: boxes [n, R, 4], class [n, R] (into
    CLASSES), valid [n, R], unique [n, R] (the caption names one object of its image alone)."""
    n, r = len(examples), shapes.MAX_OBJECTS
    classes, valid, unique = np.zeros((n, r), np.int32), np.zeros((n, r), bool), np.zeros((n, r), bool)
    for i, example in enumerate(examples):
        captions = list(example["region_captions"])
        for k, caption in enumerate(captions):
            classes[i, k], valid[i, k], unique[i, k] = CLASSES.index(caption), True, captions.count(caption) == 1
    return {"boxes": np.stack([e["boxes"] for e in examples]), "class": classes, "valid": valid, "unique": unique}


class RegionEvaluator:
    """`evaluate(params) -> {metric: value}` (module docstring) on `num_examples` held-out images."""

    def __init__(self, model, tokenizer: Tokenizer, *, num_examples: int, batch_size: int, image_size: int,
                 max_len: int):  # fmt: skip
        examples = [shapes.make_example(REGION_EVAL_SEED, "validation", i, image_size) for i in range(num_examples)]
        self.images = np.stack([e["image"] for e in examples])
        self.regions = regions_of(examples)
        self.class_tokens = tokenizer.encode(list(CLASSES), max_len)
        self.batch_size, self.prompter = batch_size, bool(model.region_depth)
        self.candidates = candidate_boxes()
        variables = lambda p: {"params": p}  # noqa: E731

        def per_image(params, images, boxes, class_embedding, classes):
            tokens = model.apply(variables(params), images, method=model.encode_image)["image_tokens"]
            candidates = jnp.broadcast_to(self.candidates, (images.shape[0], *self.candidates.shape))
            out = {
                "roi": model.apply(variables(params), tokens, boxes, method=model.roi_embedding),
                "roi_candidates": model.apply(variables(params), tokens, candidates, method=model.roi_embedding),
            }
            if self.prompter:
                out["prompter"] = model.apply(variables(params), tokens, boxes, method=model.encode_regions)
                out["grounded"] = model.apply(variables(params), tokens, class_embedding[classes], method=model.ground)
            return out

        self._per_image = jax.jit(per_image)
        self._encode_text = jax.jit(
            lambda p, t: model.apply(variables(p), t, method=model.encode_text)["text_embedding"]
        )

    def _outputs(self, params, class_embedding) -> dict[str, np.ndarray]:
        parts: dict[str, list] = {}
        boxes, classes, n = self.regions["boxes"], self.regions["class"], len(self.images)
        for start in range(0, n, self.batch_size):
            rows = np.arange(start, start + self.batch_size) % n  # a full last batch (repeats): one compile
            images = transforms.normalize_image(self.images[rows])
            out = self._per_image(params, images, boxes[rows], class_embedding, classes[rows])
            for key, value in out.items():
                parts.setdefault(key, []).append(np.asarray(value)[: min(self.batch_size, n - start)])
        return {key: np.concatenate(value) for key, value in parts.items()}

    def evaluate(self, params) -> dict[str, float]:
        class_embedding = np.asarray(self._encode_text(params, self.class_tokens))
        out = self._outputs(params, class_embedding)
        classes, valid, unique, boxes = (self.regions[k] for k in ("class", "valid", "unique", "boxes"))
        metrics = {
            "regions/chance_caption": 1.0 / len(CLASSES),
            "regions/chance_colour_shape": 1.0 / (len(COLOURS) * len(SHAPES)),
        }
        for name, prefix in (("roi", "regions/roi_"), ("prompter", "regions/")):
            if name in out:
                scores = out[name] @ class_embedding.T
                metrics.update({prefix + k: v for k, v in classification_metrics(scores, classes, valid).items()})
        scores = np.einsum("nrd,ncd->nrc", class_embedding[classes], out["roi_candidates"])
        candidate_iou = box_iou(boxes[:, :, None], self.candidates)
        metrics.update({f"grounding/{k}": v for k, v in candidate_grounding(scores, candidate_iou, unique).items()})
        if "grounded" in out:
            metrics.update({f"grounding/{k}": v for k, v in box_grounding(out["grounded"], boxes, unique).items()})
        return metrics


def classification_metrics(scores: np.ndarray, classes: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    """scores [n, R, 128] of each region against CLASSES, true classes [n, R], valid [n, R] ->
    {"caption_top1", "colour_shape"} over the valid regions."""
    picked = np.argmax(scores, axis=-1)
    colour_shape = lambda c: c % (len(COLOURS) * len(SHAPES))  # noqa: E731  (CLASSES is size-major)
    return {
        "caption_top1": float(np.mean((picked == classes)[valid])),
        "colour_shape": float(np.mean((colour_shape(picked) == colour_shape(classes))[valid])),
    }


def box_grounding(predicted: np.ndarray, boxes: np.ndarray, unique: np.ndarray) -> dict[str, float]:
    """Predicted and true boxes [n, R, 4] over the regions `unique` [n, R] -> {"iou50", "mean_iou"}."""
    iou = box_iou(predicted, boxes)
    return {"iou50": float(np.mean((iou >= 0.5)[unique])), "mean_iou": float(np.mean(iou[unique]))}


def candidate_grounding(scores: np.ndarray, candidate_iou: np.ndarray, unique: np.ndarray) -> dict[str, float]:
    """scores and IoUs [n, R, C] of C candidate boxes per region, over the regions `unique` [n, R] ->
    {"roi_iou50": the best-scoring candidate's IoU >= 0.5, "roi_ceiling": some candidate's is, "chance":
    a uniformly drawn candidate's is, in expectation}."""
    best = np.take_along_axis(candidate_iou, np.argmax(scores, -1)[..., None], -1)[..., 0]
    return {
        "roi_iou50": float(np.mean((best >= 0.5)[unique])),
        "roi_ceiling": float(np.mean((candidate_iou.max(-1) >= 0.5)[unique])),
        "chance": float(np.mean((candidate_iou >= 0.5).mean(-1)[unique])),
    }
