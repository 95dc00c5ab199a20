"""The `prompt_accuracy` evaluator of a masked LM (PCP, METHODS.md §22): the held-out grammaticality judgements of
input_pipeline/acceptability_text.py in the prompt template, the label word's slot masked, the label read as the
higher of the head's logits of the verbalizer's words there (LM-BFF's prompt-based prediction;
losses/pcp.slot_logits).

Metrics, in percent: `prompt/accuracy` over every sentence (chance 50%), and `prompt/<phenomenon>` over the
sentences of each phenomenon of child_text.PHENOMENA. `prompt_scores` is also how training/pseudo_labels.py labels
the unlabelled pool.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from input_pipeline import acceptability_text
from losses.pcp import slot_logits


def encode_prompts(tokenizer, records: Sequence[dict], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(tokens int32 [N, max_len], slots int32 [N]) of records of acceptability_text.judgement's form in the template
    (the slot's word is masked when scored, so which word fills it does not matter)."""
    text = acceptability_text
    examples = [text.prompt_example(tokenizer, text.prompt_record(r, 0), max_len) for r in records]
    return np.stack([e["text"] for e in examples]), np.array([e["slot"] for e in examples], np.int32)


def prompt_scores(score_fn: Callable, params, tokens: np.ndarray, slots: np.ndarray, batch_size: int) -> np.ndarray:
    """float32 [N, C]: `score_fn(params, tokens [B, L], slots [B])` -> [B, C] over `encode_prompts`' rows, in batches
    of `batch_size` (the last padded with its first row: one compiled shape)."""
    scores = []
    for start in range(0, len(tokens), batch_size):
        take = np.arange(start, min(start + batch_size, len(tokens)))
        take = np.concatenate([take, np.full(batch_size - len(take), start)])
        out = score_fn(params, jnp.asarray(tokens[take]), jnp.asarray(slots[take]))
        scores.append(np.asarray(out, np.float32)[: min(batch_size, len(tokens) - start)])
    return np.concatenate(scores)


def slot_scorer(model, verbalizer: np.ndarray) -> Callable:
    """A jitted score_fn for `prompt_scores`: the model's verbalizer logits at the slot."""
    return jax.jit(lambda params, tokens, slots: slot_logits(params, tokens, slots, jnp.asarray(verbalizer),
                                                              model=model))  # fmt: skip


class PromptEvaluator:
    """See the module docstring: `num_examples` held-out sentences (the fixed `test` stream), scored in batches."""

    def __init__(self, model, tokenizer, *, max_len: int, num_examples: int, batch_size: int):
        self.records = acceptability_text.pool(num_examples, "test")
        self.phenomena = np.array([r["phenomenon"] for r in self.records])
        self.labels = np.array([r["label"] for r in self.records])
        self.score = slot_scorer(model, acceptability_text.verbalizer_ids(tokenizer))
        self.tokens, self.slots = encode_prompts(tokenizer, self.records, max_len)  # once, not at every evaluation
        self.batch_size = batch_size
        self.description = (
            f"{num_examples} held-out grammaticality judgements in the prompt template, read at the label slot "
            f"({' / '.join(acceptability_text.VERBALIZER)})"
        )

    def evaluate(self, params) -> dict[str, float]:
        scores = prompt_scores(self.score, params, self.tokens, self.slots, self.batch_size)
        right = np.argmax(scores, axis=1) == self.labels
        metrics = {"prompt/accuracy": 100.0 * float(right.mean())}
        for phenomenon in dict.fromkeys(self.phenomena):
            metrics[f"prompt/{phenomenon}"] = 100.0 * float(right[self.phenomena == phenomenon].mean())
        return metrics
