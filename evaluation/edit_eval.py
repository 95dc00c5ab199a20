"""The `edits` evaluator (SuperEdit, METHODS.md §28): how well an editing denoiser (models/denoiser.py) carries out
held-out instructions on held-out shapes scenes (input_pipeline/shape_edits.py, split "test"), scored by the
pixels the edit should change.

Each pair's edit is sampled by DDIM (`sample_steps` steps, η = 0) from fixed noise, reading the source and the
instruction (with `text_guidance` s ≠ 1, InstructPix2Pix's classifier-free guidance on the instruction, its image
scale 1: ε̂ = ε(source, ∅) + s (ε(source, c) − ε(source, ∅))), and compared with the true edited image pixel
by pixel: a pixel is changed where its largest channel difference from the source exceeds
shape_edits.CHANGE_THRESHOLD, and right where its difference from the target does not. Metrics (percent):
- `iou`: the intersection over union of the changed pixels with those the edit changes (a move or an add is
  placed right, a recolour covers its object), mean over pairs;
- `changed_right`: of the pixels the edit changes, those that come out right (the new colour, the moved object);
- `kept`: of the pixels the edit leaves alone, those left alone;
- `accuracy` and `accuracy_<edit>`: pairs with iou >= 50 and changed_right >= 50, overall and by kind of edit;
- `wrong_instruction_accuracy`: the same accuracy when the sample reads a wrong instruction (a word swapped): low
  when the model follows the words, high when it edits from the image alone;
- `preference`: % of (pair, step) where the wrong instruction predicts the noise worse than the right one, at the
  same z_t, at steps 100, 300, 500, 700 and 900 of 1000 (SuperEdit's triplet, held out); `wrong_minus_right`: the
  mean difference of their errors, times 1000.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from input_pipeline import shape_edits, transforms
from models.diffusion import add_noise, ddim_sample

PREFERENCE_STEPS = (100, 300, 500, 700, 900)


def edit_scores(edited: np.ndarray, source: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    """Per pair [N]: iou, changed_right, kept (fractions) and correct (bool), for images [N, S, S, 3] in 0..255."""
    diff = lambda a, b: np.abs(a.astype(np.float32) - b.astype(np.float32)).max(axis=-1)  # noqa: E731
    should = diff(target, source) > shape_edits.CHANGE_THRESHOLD
    did = diff(edited, source) > shape_edits.CHANGE_THRESHOLD
    right = diff(edited, target) <= shape_edits.CHANGE_THRESHOLD
    count = lambda mask: mask.sum(axis=(1, 2)).astype(np.float32)  # noqa: E731
    union = count(should | did)
    iou = np.where(union > 0, count(should & did) / np.maximum(union, 1), 1.0)
    changed_right = count(should & right) / np.maximum(count(should), 1)
    kept = count(~should & ~did) / np.maximum(count(~should), 1)
    return {"iou": iou, "changed_right": changed_right, "kept": kept, "correct": (iou >= 0.5) & (changed_right >= 0.5)}


def guided_noise(predict, z, t, tokens, scale: float):
    """ε̂ of `predict(z, t, tokens, dropped)` guided towards the instruction by `scale` (1: the conditional one)."""
    eps = predict(z, t, tokens, None)
    if scale == 1.0:
        return eps
    null = predict(z, t, tokens, jnp.ones(tokens.shape[:1], bool))
    return null + scale * (eps - null)


def to_pixels(images: np.ndarray) -> np.ndarray:
    """Normalised images (transforms.normalize_image's) -> float32 0..255."""
    return np.clip((np.asarray(images) * transforms.IMAGE_STD + transforms.IMAGE_MEAN) * 255.0, 0, 255)


class EditEvaluator:
    """`evaluate(params)` on `num_examples` held-out pairs of `image_size` px; `model` an EditDenoiser."""

    def __init__(self, model, tokenizer, *, num_examples: int, batch_size: int, image_size: int, max_len: int,
                 sample_steps: int, text_guidance: float = 1.0) -> None:  # fmt: skip
        records = [shape_edits.record(0, "test", i, image_size) for i in range(num_examples)]
        self.source = np.stack([r["image"] for r in records])
        self.target = np.stack([r["target"] for r in records])
        self.kinds = np.array([r["edit"] for r in records])
        self.right = tokenizer.encode([r["caption"] for r in records], max_len)
        self.wrong = tokenizer.encode([r["hard_negatives"][0] for r in records], max_len)
        self.batch_size = batch_size
        guided = f", instruction guidance {text_guidance:g}" if text_guidance != 1.0 else ""
        self.description = f"{num_examples} held-out shapes editing pairs, {sample_steps} DDIM steps{guided}"
        low = jnp.asarray(transforms.normalize_image(np.zeros((1, 1, 1, 3), np.uint8)))
        high = jnp.asarray(transforms.normalize_image(np.full((1, 1, 1, 3), 255, np.uint8)))
        apply = lambda params, *inputs: model.apply({"params": params}, *inputs)  # noqa: E731

        def sample(params, source, tokens, noise):
            predict = lambda z, t, tokens, dropped: apply(params, z, source, t, tokens, dropped)  # noqa: E731
            step = lambda z, t: guided_noise(predict, z, t, tokens, text_guidance)  # noqa: E731
            return ddim_sample(step, noise, sample_steps, (low, high))

        def errors(params, source, target, right, wrong, noise, t):
            z = add_noise(target, noise, t)
            error = lambda tokens: jnp.mean(jnp.square(apply(params, z, source, t, tokens) - noise), axis=(1, 2, 3))  # noqa: E731
            return error(right), error(wrong)

        self._sample, self._errors = jax.jit(sample), jax.jit(errors)

    def evaluate(self, params) -> dict[str, float]:
        n = len(self.source)
        edited, edited_wrong, d_right, d_wrong = [], [], [], []
        key = jax.random.PRNGKey(0)  # the same noise at every evaluation, so that evaluations compare
        noise = np.asarray(jax.random.normal(key, self.source.shape, jnp.float32))
        for start in range(0, n, self.batch_size):
            part = slice(start, start + self.batch_size)
            source = transforms.normalize_image(self.source[part])
            target = transforms.normalize_image(self.target[part])
            edited.append(to_pixels(self._sample(params, source, self.right[part], noise[part])))
            edited_wrong.append(to_pixels(self._sample(params, source, self.wrong[part], noise[part])))
            for step in PREFERENCE_STEPS:
                t = np.full((len(source),), step, np.int32)
                right, wrong = self._errors(params, source, target, self.right[part], self.wrong[part], noise[part], t)
                d_right.append(np.asarray(right))
                d_wrong.append(np.asarray(wrong))
        scores = edit_scores(np.concatenate(edited), self.source, self.target)
        wrong_scores = edit_scores(np.concatenate(edited_wrong), self.source, self.target)
        d_right, d_wrong = np.concatenate(d_right), np.concatenate(d_wrong)
        metrics = {name: 100.0 * float(np.mean(scores[name])) for name in ("iou", "changed_right", "kept")}
        metrics["accuracy"] = 100.0 * float(np.mean(scores["correct"]))
        for kind in shape_edits.EDITS:
            metrics[f"accuracy_{kind}"] = 100.0 * float(np.mean(scores["correct"][self.kinds == kind]))
        metrics["wrong_instruction_accuracy"] = 100.0 * float(np.mean(wrong_scores["correct"]))
        metrics["preference"] = 100.0 * float(np.mean(d_wrong > d_right))
        metrics["wrong_minus_right"] = 1000.0 * float(np.mean(d_wrong - d_right))
        return metrics
