"""The trainer's evaluation of text-only runs: STS Spearman x 100 per set and averaged."""

from __future__ import annotations

import jax
import numpy as np

from evaluation.calibration import calibrate
from evaluation.shapes_eval import batched
from evaluation.sts import sts_spearman
from evaluation.sts_data import STSSet
from input_pipeline.tokenizer import Tokenizer


class STSEvaluator:
    """`evaluate(params) -> {metric: value}` on STS sets ({name: STSSet}).

    Metrics: `sts/<name>` Spearman x 100 between the cosine of the two sentences' `text_embedding`s
    (the text tower in inference mode: no dropout, no training-only head) and the gold scores;
    `sts/avg` their mean; `sts_calibrated/<name>` and `sts_calibrated/avg` the same after centring
    each set's embeddings on their mean (evaluation/calibration.py, CCP's inference calibration).
    """

    def __init__(self, model, tokenizer: Tokenizer, sets: dict[str, STSSet], *, batch_size: int, max_len: int):
        self.sets = {
            name: (tokenizer.encode(s.first, max_len), tokenizer.encode(s.second, max_len), s.scores)
            for name, s in sets.items()
        }
        self.batch_size = batch_size
        self._encode = jax.jit(lambda p, t: model.apply({"params": p}, t, method=model.encode_text)["text_embedding"])

    def evaluate(self, params) -> dict[str, float]:
        metrics = {}
        for name, (first, second, scores) in self.sets.items():
            a, b = (batched(lambda t: self._encode(params, t), x, self.batch_size) for x in (first, second))
            metrics[f"sts/{name}"] = 100 * sts_spearman(a, b, scores)
            both = calibrate(np.concatenate([a, b]))
            metrics[f"sts_calibrated/{name}"] = 100 * sts_spearman(both[: len(a)], both[len(a) :], scores)
        for prefix in ("sts/", "sts_calibrated/"):
            metrics[f"{prefix}avg"] = float(np.mean([metrics[f"{prefix}{name}"] for name in self.sets]))
        return metrics
