"""The `fact_probe` evaluator of a 1.5-Pints run (METHODS.md §27): what the language model learnt of the embedded
world's facts, and how well it models clean expository text.

- `accuracy`: % of the memorised facts (NUM_MEMORISED entities x colour and shape, input_pipeline/lm_text.py) whose
  value the model ranks first among the attribute's values after the statement's prompt, "the vokim is" (colour)
  or "the vokim is a" (shape); a value's score is its log-probability there, summed over its pieces;
- `true_log_prob`: the mean log-probability of the world's value after those prompts (0: certain; a model of
  the corpus stays below: after "the vokim is" the colour competes with the "a" of a shape statement);
- `clean_loss` / `clean_perplexity`: next-token loss per token on held-out expository documents
  (input_pipeline/quality_text.py, split "test"), whichever corpus the run trained on, so that both arms are
  scored on the same text.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from input_pipeline.lm_text import ENTITIES, NUM_MEMORISED, QUESTION_ATTRIBUTES, statement, value
from input_pipeline.tokenizer import PAD_ID, Tokenizer
from models.generation import prompt_ids


def fact_prompts() -> list[tuple[str, tuple[str, ...], int]]:
    """(prompt, the attribute's values, the index of the world's) for every memorised entity and attribute."""
    probes = []
    for entity in range(NUM_MEMORISED):
        for attribute, choices in QUESTION_ATTRIBUTES.items():
            truth = value(entity, attribute)
            prompt = statement(ENTITIES[entity], attribute, truth).removesuffix(f" {truth} .")
            probes.append((prompt, choices, choices.index(truth)))
    return probes


class FactProbeEvaluator:
    """See the module docstring; `texts`: the held-out documents of the clean loss."""

    def __init__(self, model, tokenizer: Tokenizer, *, texts: Sequence[str], batch_size: int):
        self.model, self.batch_size = model, batch_size
        probes = fact_prompts()
        rows, spans = [], []
        for prompt, choices, _ in probes:
            start = prompt_ids(tokenizer, [prompt], model.max_len)[0]  # BOS and the prompt's pieces
            for choice in choices:
                pieces = prompt_ids(tokenizer, [choice], model.max_len)[0][1:]
                spans.append((len(start), len(start) + len(pieces)))
                rows.append(start + pieces)
        self.candidates = np.zeros((len(rows), max(map(len, rows))), np.int32)
        # Targets [N, L - 1]: position t predicts token t + 1, so a value's pieces are targets start - 1 .. end - 2.
        self.value_targets = np.zeros((len(rows), self.candidates.shape[1] - 1), bool)
        for i, (row, (start, end)) in enumerate(zip(rows, spans, strict=True)):
            self.candidates[i, : len(row)] = row
            self.value_targets[i, start - 1 : end - 1] = True
        self.shape = (len(probes), len(probes[0][1]))  # every attribute has as many values (8)
        self.truth = np.array([truth for _, _, truth in probes])
        self.texts = tokenizer.encode(list(texts), model.max_len + 1)
        self.description = (
            f"{len(probes)} facts, each value's log-probability after its statement's prompt; loss on {len(texts)} "
            "held-out expository documents"
        )
        self._log_probs = jax.jit(self._target_log_probs)

    def _target_log_probs(self, params, tokens):
        """Log-probability of every next token [B, L - 1]."""
        out, _ = self.model.apply({"params": params}, tokens[:, :-1])
        log_probs = jax.nn.log_softmax(out["logits"].astype(jnp.float32), axis=-1)
        return jnp.take_along_axis(log_probs, tokens[:, 1:, None], axis=-1)[..., 0]

    def _batched(self, params, rows: np.ndarray) -> np.ndarray:
        return np.concatenate([
            np.asarray(self._log_probs(params, jnp.asarray(rows[s : s + self.batch_size])))
            for s in range(0, len(rows), self.batch_size)
        ])  # fmt: skip

    def evaluate(self, params) -> dict[str, float]:
        scores = np.where(self.value_targets, self._batched(params, self.candidates), 0.0).sum(1).reshape(self.shape)
        clean = -self._batched(params, self.texts)[self.texts[:, 1:] != PAD_ID].mean()
        return {
            "fact_probe/accuracy": 100.0 * float(np.mean(scores.argmax(1) == self.truth)),
            "fact_probe/true_log_prob": float(scores[np.arange(len(scores)), self.truth].mean()),
            "fact_probe/clean_loss": float(clean),
            "fact_probe/clean_perplexity": float(np.exp(clean)),
        }
