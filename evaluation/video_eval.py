"""Video evaluation (X-CLIP): zero-shot classification of held-out clips by motion and by appearance, and
video-text retrieval, each beside the mean of frame embeddings (plain CLIP on each frame, averaged) and chance.

The clips are the first `num_examples` of the shapes_video `test` split (never trained on), `frames` frames each
from the middles of equal segments. Labels: `motion` (MOTIONS; classes "moving left", ...), `shape` and `colour`
(appearance; colour only over the clips whose colour stays), and `motion_order_only`: the motion label over the
clips of the order-only motions (left, right, growing, shrinking), classified among all of MOTIONS: the mean of
frames cannot order the frames, so it tells each of them from its reverse no better than a coin.
Prompts come from template families never trained on (evaluation/prompts.py), averaged per class. Metrics
(fractions), for each label L:
- `video/L`: X-CLIP, s cos(video, prompted class text), each class text prompted by the clip's tokens;
- `video/L_unprompted`: the video embedding against the plain class texts (the video modules less the prompt);
- `video/L_mean_frames`: the baseline; `video/chance_L`: 1 / classes.
Retrieval, R@1/5/10 both ways over the test captions (a caption shared by several clips is right for each):
`video_retrieval/…` from the video embedding, `video_retrieval_mean_frames/…` from the baseline.
The X-CLIP metrics need config.model.video_frames > 0; the baseline runs on any two-tower model (a CLIP run).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from configs.errors import ConfigError
from evaluation import prompts
from evaluation.retrieval import retrieval_metrics, same_text_positives
from evaluation.shapes_eval import batched
from evaluation.zero_shot import class_embeddings
from input_pipeline import shape_video, transforms
from input_pipeline.shape_drawing import COLOURS, SHAPES
from input_pipeline.tokenizer import Tokenizer

VIDEO_EVAL_SEED = 0  # the test split's clips: a split no training draws from
CLASS_PROMPTS = {
    "motion": [[t.format(motion=m) for t in prompts.MOTION_TEMPLATES] for m in shape_video.MOTIONS],
    "shape": [[t.format(shape=s) for t in prompts.VIDEO_SHAPE_TEMPLATES] for s in SHAPES],
    "colour": [[t.format(colour=c) for t in prompts.VIDEO_COLOUR_TEMPLATES] for c in COLOURS],
}
PROMPTED_LABELS = {"motion": "motion", "motion_order_only": "motion", "shape": "shape", "colour": "colour"}


def label_columns(clips: list[dict]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(labels, valid): int [n] and bool [n] per label of PROMPTED_LABELS."""
    motion = np.array([c["motion"] for c in clips])
    labels = {"motion": motion, "motion_order_only": motion}
    labels.update(shape=np.array([c["shape"] for c in clips]), colour=np.array([c["colour"] for c in clips]))
    valid = dict.fromkeys(labels, np.ones(len(clips), bool))
    valid["motion_order_only"] = np.isin(motion, shape_video.ORDER_ONLY)
    valid["colour"] = motion != shape_video.MOTIONS.index("changing colour")
    return labels, valid


def classification_metrics(scores: dict[str, np.ndarray], labels: dict[str, np.ndarray],
                           valid: dict[str, np.ndarray], suffix: str = "") -> dict[str, float]:  # fmt: skip
    """scores [n, classes] per label (PROMPTED_LABELS' class sets), labels [n], valid [n] ->
    {"video/<label><suffix>": top-1 accuracy over the valid clips}."""
    return {
        f"video/{label}{suffix}": float(np.mean((np.argmax(scores[label], -1) == labels[label])[valid[label]]))
        for label in labels
    }


class VideoEvaluator:
    """`evaluate(params) -> {metric: value}` (module docstring) on `num_examples` held-out clips."""

    def __init__(self, model, tokenizer: Tokenizer, *, num_examples: int, batch_size: int, image_size: int,
                 max_len: int, frames: int):  # fmt: skip
        clips = [shape_video.make_clip(VIDEO_EVAL_SEED, "test", i, image_size) for i in range(num_examples)]
        picked = shape_video.frame_indices(shape_video.CLIP_FRAMES, frames, None)
        self.videos = np.stack([c["video"][picked] for c in clips])
        self.captions = [c["caption"] for c in clips]
        self.caption_tokens = tokenizer.encode(self.captions, max_len)
        self.labels, self.valid = label_columns(clips)
        self.class_tokens = {k: tokenizer.encode(sum(v, []), max_len) for k, v in CLASS_PROMPTS.items()}
        longest = max(
            int(np.sum(tokenizer.encode(sum(v, []), 4 * max_len) != 0, 1).max()) for v in CLASS_PROMPTS.values()
        )
        if longest > max_len:  # a cut prompt loses its class word: every class would read the same
            raise ConfigError(
                f"config.model.text.max_len={max_len} cuts the video evaluator's prompts (the longest has {longest} "
                f"tokens); raise it to {longest}."
            )
        self.batch_size, self.xclip = batch_size, bool(model.video_frames)
        variables = lambda p: {"params": p}  # noqa: E731

        def per_clip(params, videos, class_features):
            out = {"mean_frames": model.apply(variables(params), videos, method=model.frame_mean_embedding)}
            if self.xclip:
                video = model.apply(variables(params), videos, method=model.encode_video)
                out["video"] = video["video_embedding"]
                for label, features in class_features.items():
                    candidates = jnp.broadcast_to(features, (videos.shape[0], *features.shape))
                    prompted = model.apply(
                        variables(params), candidates, video["video_tokens"], method=model.prompt_text
                    )
                    out[f"prompted_{label}"] = jnp.einsum("bd,bcd->bc", video["video_embedding"], prompted)
            return out

        self._per_clip = jax.jit(per_clip)
        self._encode_text = jax.jit(lambda p, t: model.apply(variables(p), t, method=model.encode_text))

    def evaluate(self, params) -> dict[str, float]:
        classes, class_features = {}, {}
        for label, tokens in self.class_tokens.items():
            text = batched(lambda t: self._encode_text(params, t), tokens, self.batch_size)
            count = len(CLASS_PROMPTS[label])
            classes[label] = class_embeddings(
                text["text_embedding"].reshape(count, -1, text["text_embedding"].shape[-1])
            )
            class_features[label] = text["text_features"].reshape(count, -1, text["text_features"].shape[-1]).mean(1)
        per_clip = lambda v: self._per_clip(params, transforms.normalize_image(v), class_features)  # noqa: E731
        outputs = batched(per_clip, self.videos, self.batch_size)
        captions = batched(lambda t: self._encode_text(params, t), self.caption_tokens, self.batch_size)[
            "text_embedding"
        ]
        positives = same_text_positives(self.captions)
        metrics = {f"video/chance_{label}": 1.0 / len(CLASS_PROMPTS[kind]) for label, kind in PROMPTED_LABELS.items()}
        for key, suffix in (("mean_frames", "_mean_frames"), ("video", "_unprompted")):
            if key in outputs:
                scores = {label: outputs[key] @ classes[kind].T for label, kind in PROMPTED_LABELS.items()}
                metrics.update(classification_metrics(scores, self.labels, self.valid, suffix))
                prefix = "video_retrieval/" if key == "video" else "video_retrieval_mean_frames/"
                recalls = retrieval_metrics(outputs[key], captions, positives=positives)
                metrics.update({prefix + k.replace("image", "video"): v for k, v in recalls.items()})
        if self.xclip:
            prompted = {label: outputs[f"prompted_{kind}"] for label, kind in PROMPTED_LABELS.items()}
            metrics.update(classification_metrics(prompted, self.labels, self.valid))
        return metrics
