"""Intent and slot probes on frozen text embeddings of held-out utterances with frames: the embedded commands
(input_pipeline/dialog_frames.py) or the labelled lines of your JSON Lines (input_pipeline/dialog_files.py).
SPACE-2's measures of task-oriented dialog understanding."""

from __future__ import annotations

import jax
import numpy as np

from evaluation.few_shot import few_shot_metrics
from evaluation.linear_probe import linear_probe, standardize
from evaluation.shapes_eval import batched
from input_pipeline.dialog_files import read_dialogs
from input_pipeline.dialog_frames import INTENTS, Frame, command, frame_items
from input_pipeline.tokenizer import Tokenizer

# Ridge penalty on standardised features (mean squared error + RIDGE_L2 ||W||^2): weak enough that features
# linear in the items fit them well within the 0.5 threshold (multi-hot items: every score within 0.02 of
# its target, measured), strong enough to keep the solve well-posed when features are collinear.
RIDGE_L2 = 1e-2
VALIDATION_FRACTION = 0.2  # the last fifth of the probe set picks the intent probe's L2 (linear_probe.L2_GRID)
FEW_SHOT_EPISODES = 5


def intent_labels(frames: list[Frame], intents: list[str]) -> np.ndarray:
    """[N] int: each frame's intent as an index into `intents`."""
    return np.array([intents.index(f.intent) for f in frames], np.int64)


def slot_value_matrix(frames: list[Frame], items: list[str]) -> np.ndarray:
    """bool [N, len(items)]: whether each frame holds each "slot-value" (SV view) item."""
    column = {item: k for k, item in enumerate(items)}
    matrix = np.zeros((len(frames), len(items)), bool)
    for row, frame in enumerate(frames):
        matrix[row, [column[item] for item in frame_items(frame)["SV"]]] = True
    return matrix


def micro_f1(predicted: np.ndarray, true: np.ndarray) -> float:
    """2 TP / (2 TP + FP + FN) over all entries of bool [N, K] matrices; 1.0 when neither holds a True."""
    tp = np.sum(predicted & true)
    wrong = np.sum(predicted ^ true)
    return 1.0 if tp + wrong == 0 else float(2 * tp / (2 * tp + wrong))


def ridge_scores(train: np.ndarray, targets: np.ndarray, test: np.ndarray, l2: float = RIDGE_L2) -> np.ndarray:
    """[M, K] predictions of a closed-form multi-output ridge regression fitted on [N, D] `train` features
    (standardised with their own statistics) and [N, K] targets, for [M, D] `test` features."""
    x, x_test = standardize(train, test)
    mean = targets.mean(axis=0)  # the unpenalised bias: features are centred
    gram = x.T @ x / len(x) + l2 * np.eye(x.shape[1])
    w = np.linalg.solve(gram, x.T @ (targets - mean) / len(x))
    return x_test @ w + mean


def dialog_metrics(probe: np.ndarray, probe_frames: list[Frame], test: np.ndarray, test_frames: list[Frame],
                   *, shots: tuple[int, ...] = (1, 5), seed: int = 0,
                   intents: list[str] | None = None) -> dict[str, float]:  # fmt: skip
    """Intent and slot probes trained on [N, D] `probe` embeddings, scored on [M, D] `test` ones, in percent.

    `intent_probe`: accuracy of linear_probe's logistic regression, its L2 picked on the last
    VALIDATION_FRACTION of the probe set and refitted on all of it; `intent_{k}shot`: nearest-prototype
    accuracy with k probe examples per intent (few_shot.py), the mean of FEW_SHOT_EPISODES draws from
    np.random.default_rng(seed), classes in the order of `intents` (default: sorted); `slot_f1`: micro-F1 of each
    test frame's set of "slot-value" items, predicted where ridge_scores > 0.5 over the items seen in the probe set
    (unseen ones count as missed).
    """
    intents = intents or sorted({f.intent for f in probe_frames + test_frames})
    probe_y, test_y = intent_labels(probe_frames, intents), intent_labels(test_frames, intents)
    split = len(probe) - max(1, round(VALIDATION_FRACTION * len(probe)))
    fit, validation = (probe[:split], probe_y[:split]), (probe[split:], probe_y[split:])
    probe_metrics = linear_probe(fit, validation, (test, test_y), len(intents))
    metrics = {"intent_probe": 100 * probe_metrics["acc1"]}
    few_shot = few_shot_metrics((probe, probe_y), (test, test_y), len(intents), shots, FEW_SHOT_EPISODES, seed)
    metrics.update({f"intent_{k}shot": 100 * few_shot[f"{k}shot_acc1"] for k in shots})
    seen = sorted(set().union(*(frame_items(f)["SV"] for f in probe_frames)))
    unseen = sorted(set().union(*(frame_items(f)["SV"] for f in test_frames)) - set(seen))
    scores = ridge_scores(probe, slot_value_matrix(probe_frames, seen).astype(np.float64), test)
    predicted = np.concatenate([scores > 0.5, np.zeros((len(test), len(unseen)), bool)], axis=1)
    metrics["slot_f1"] = 100 * micro_f1(predicted, slot_value_matrix(test_frames, seen + unseen))
    return metrics


class DialogEvaluator:
    """`evaluate(params) -> {"dialog/<metric>": value}`: dialog_metrics of the text tower's `text_embedding`s
    of command(seed, "probe", i) and command(seed, "test", i) for i < num_examples, or with `path` of the first
    and second halves of that JSON Lines file's labelled utterances (at most num_examples each)."""

    def __init__(self, model, tokenizer: Tokenizer, *, num_examples: int, batch_size: int, max_len: int,
                 seed: int = 0, path: str = ""):  # fmt: skip
        if path:
            labelled = read_dialogs(path)[0]
            half = len(labelled) // 2
            probe, test = labelled[:half][:num_examples], labelled[half:][:num_examples]
            self.description = f"intent and slot probes on {len(test)} labelled utterances of {path}"
        else:
            probe = [command(seed, "probe", i) for i in range(num_examples)]
            test = [command(seed, "test", i) for i in range(num_examples)]
            self.description = f"intent and slot probes on {num_examples} held-out embedded commands"
        self.intents = None if path else list(INTENTS)
        self.probe_tokens = tokenizer.encode([text for text, _ in probe], max_len)
        self.test_tokens = tokenizer.encode([text for text, _ in test], max_len)
        self.probe_frames, self.test_frames = [f for _, f in probe], [f for _, f in test]
        self.batch_size, self.seed = batch_size, seed
        self._encode = jax.jit(lambda p, t: model.apply({"params": p}, t, method=model.encode_text)["text_embedding"])

    def evaluate(self, params) -> dict[str, float]:
        probe, test = (batched(lambda t: self._encode(params, t), x, self.batch_size)
                       for x in (self.probe_tokens, self.test_tokens))  # fmt: skip
        metrics = dialog_metrics(probe, self.probe_frames, test, self.test_frames, seed=self.seed, intents=self.intents)
        return {f"dialog/{name}": value for name, value in metrics.items()}
