"""The `in_context` evaluator (MEND, METHODS.md §23): how well a language model answers held-out in-context tasks
(input_pipeline/icl_tasks.py, split "test": maps it never saw) from its demonstrations, from MEND's k distilled
vectors, and from nothing.

Each task's answer is ranked among the output domain's 8 words by its log-probability after the query, summed over
its pieces. Metrics (percent right, and the tokens the language model reads per task):
- `full` / `full_tokens`: in-context learning, the language model reading [BOS, D, x];
- `zero_shot` / `zero_shot_tokens`: [BOS, x] alone (a model that learnt the tasks' prior, and no more);
- `mend` / `mend_tokens` (a MEND run): [S_D, BOS, x], S_D the distiller's k vectors; `agreement`: % of tasks
  where MEND's choice is in-context learning's;
- `chance`: 100 / 8; `frequent_output`: the demonstrations' most frequent output, ties split (what a reader of
  the outputs alone, who never binds one to its input, gets right).
On a language-model run the params are the model's; on a MEND run (models/mend.py) the language model's are
params["lm"] and the whole tree feeds the distiller.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from input_pipeline import icl_tasks
from input_pipeline.token_ids import BOS_ID
from models.mend import MendModel


def _rows(prefixes: list[list[int]], candidates: list[list[list[int]]], length: int):
    """Tokens [N * 8, length] (each prefix followed by each candidate) and the mask [N * 8, length - 1] of the
    targets that are the candidate's pieces (position t predicts token t + 1)."""
    tokens = np.zeros((sum(map(len, candidates)), length), np.int32)
    targets = np.zeros((tokens.shape[0], length - 1), bool)
    row = 0
    for prefix, options in zip(prefixes, candidates, strict=True):
        for option in options:
            ids = prefix + option
            if len(ids) > length:
                raise ValueError(f"A held-out task of {len(ids)} pieces does not fit the context of {length}.")
            tokens[row, : len(ids)] = ids
            targets[row, len(prefix) - 1 : len(ids) - 1] = True
            row += 1
    return tokens, targets


def _scores(logits: jax.Array, tokens: jax.Array, targets: jax.Array) -> jax.Array:
    """Summed log-probability [R] of each row's target pieces; logits [R, L - 1, V] predict tokens[:, 1:]."""
    log_p = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_p, tokens[:, 1:, None], axis=-1)[..., 0]
    return jnp.sum(jnp.where(targets, picked, 0.0), axis=-1)


class InContextEvaluator:
    """`evaluate(params)` on `num_examples` held-out tasks; `model` a DecoderLM or a MendModel."""

    def __init__(self, model, tokenizer, *, num_examples: int, batch_size: int, demo_len: int = 0):
        self.model, self.batch_size = model, batch_size
        lm = model.lm if isinstance(model, MendModel) else model
        records = [icl_tasks.record(0, "test", i) for i in range(num_examples)]
        piece = lambda text: icl_tasks.pieces(tokenizer, text)  # noqa: E731
        options = [[piece(c) for c in r["choices"]] for r in records]
        self.truth = np.array([r["choices"].index(r["answer"]) for r in records])
        self.choices = len(records[0]["choices"])
        demos, queries = [piece(r["demos"]) for r in records], [piece(r["query"]) for r in records]
        full = [[BOS_ID, *d, *q] for d, q in zip(demos, queries, strict=True)]
        bare = [[BOS_ID, *q] for q in queries]
        self.full = _rows(full, options, lm.max_len + 1)
        self.zero_shot = _rows(bare, options, lm.max_len + 1)
        self.tokens = {"full_tokens": np.mean(list(map(len, full))), "zero_shot_tokens": np.mean(list(map(len, bare)))}
        if isinstance(model, MendModel):
            k = model.virtual_tokens
            self.query = _rows(bare, options, lm.max_len + 1 - k)
            self.demos = np.zeros((len(records), demo_len), np.int32)
            for i, d in enumerate(demos):
                self.demos[i, : len(d)] = d
            self.demo_length = np.array([len(d) for d in demos], np.int32)
            self.tokens["mend_tokens"] = k + self.tokens["zero_shot_tokens"]
        self.frequent_output = 100.0 * float(np.mean([icl_tasks.frequent_output_accuracy(r) for r in records]))
        self.description = f"{num_examples} held-out in-context tasks (input_pipeline/icl_tasks.py)"
        self._lm_scores = jax.jit(lambda p, t, m: _scores(lm.apply({"params": p}, t[:, :-1])[0]["logits"], t, m))
        if isinstance(model, MendModel):

            def mend_scores(params, demos, lengths, tokens, mask):
                # S_D once per task, then read before each of its candidates (rows are task-major).
                summary = model.apply({"params": params}, demos, lengths, method=model.summarise)
                prefix = jnp.repeat(summary, self.choices, axis=0)
                out, _ = lm.apply({"params": params["lm"]}, tokens[:, :-1], prefix=prefix)
                return _scores(out["logits"], tokens, mask)

            self._mend_scores = jax.jit(mend_scores)

    def _choose(self, score_rows) -> np.ndarray:
        """The chosen candidate per task, from a function of a row range [lo, hi) -> scores."""
        rows, step = len(self.truth) * self.choices, self.batch_size * self.choices
        scores = np.concatenate([np.asarray(score_rows(lo, min(lo + step, rows))) for lo in range(0, rows, step)])
        return scores.reshape(-1, self.choices).argmax(axis=-1)

    def evaluate(self, params) -> dict[str, float]:
        mend = isinstance(self.model, MendModel)
        lm_params = params["lm"] if mend else params
        picks = {}
        for name, (tokens, mask) in (("full", self.full), ("zero_shot", self.zero_shot)):
            picks[name] = self._choose(lambda lo, hi: self._lm_scores(lm_params, tokens[lo:hi], mask[lo:hi]))  # noqa: B023
        if mend:
            tokens, mask = self.query

            def score_rows(lo, hi):  # lo, hi: multiples of the choices (whole tasks)
                tasks = slice(lo // self.choices, hi // self.choices)
                return self._mend_scores(params, self.demos[tasks], self.demo_length[tasks], tokens[lo:hi], mask[lo:hi])

            picks["mend"] = self._choose(score_rows)
        metrics = {name: 100.0 * float(np.mean(p == self.truth)) for name, p in picks.items()}
        if mend:
            metrics["agreement"] = 100.0 * float(np.mean(picks["mend"] == picks["full"]))
        return {
            **metrics, **{k: float(v) for k, v in self.tokens.items()}, "chance": 100.0 / self.choices,
            "frequent_output": self.frequent_output,
        }  # fmt: skip
