"""The `minimal_pairs` evaluator of a masked language model (CLIMB, METHODS.md §26): BLiMP-style grammaticality
judgements and pseudo-perplexity, both from pseudo-log-likelihoods, as the BabyLM evaluation pipeline scores MLMs.

A sentence's pseudo-log-likelihood (PLL; Salazar et al. 2020) is the sum over its pieces t (not BOS, EOS or
padding) of log p(piece t | the sentence with piece t replaced by [MASK]): one masked copy per piece, all copies of
all sentences scored in fixed-size batches by one jitted function.
- `minimal_pairs/accuracy`: % of the (phenomenon, grammatical, ungrammatical) pairs whose grammatical sentence has
  the higher PLL; a tie counts as wrong (a model that cannot tell the two apart has not learnt the phenomenon);
- `minimal_pairs/<phenomenon>`: the same % over each phenomenon's pairs (input_pipeline/child_text.py's PHENOMENA);
- `minimal_pairs/pseudo_perplexity`: exp(-(sum of PLLs) / (number of pieces)) over held-out documents.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from input_pipeline.token_ids import BOS_ID, EOS_ID, PAD_ID


def masked_copies(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """int32 [N, L] -> (rows int [M], positions int [M], pieces int32 [M]): one entry per real piece of every row
    (not BOS, EOS or padding), in row order: which row, where in it, and the piece there."""
    real = (tokens != PAD_ID) & (tokens != BOS_ID) & (tokens != EOS_ID)
    rows, positions = np.nonzero(real)
    return rows, positions, tokens[rows, positions]


class MinimalPairsEvaluator:
    """See the module docstring. `logits_fn(params, tokens int32 [B, L]) -> logits [B, L, V]`, V at least
    `mask_id` + 1; `pairs`: (phenomenon, grammatical, ungrammatical) sentences; `texts`: held-out documents of the
    pseudo-perplexity; `batch_size`: masked copies scored per call."""

    def __init__(
        self, logits_fn: Callable, tokenizer, *, mask_id: int, max_len: int,
        pairs: Sequence[tuple[str, str, str]], texts: Sequence[str], batch_size: int,
    ):  # fmt: skip
        if not pairs or not texts:
            raise ValueError("The minimal_pairs evaluator needs at least one pair and one held-out text.")
        self.mask_id, self.batch_size = mask_id, batch_size
        self.phenomena = np.array([p for p, _, _ in pairs])
        sentences = [good for _, good, _ in pairs] + [bad for _, _, bad in pairs] + list(texts)
        self.tokens = tokenizer.encode(sentences, max_len)
        self.rows, self.positions, self.pieces = masked_copies(self.tokens)
        self.num_pairs = len(pairs)
        self.description = (
            f"{len(pairs)} minimal pairs ({', '.join(dict.fromkeys(self.phenomena))}) judged by masked-LM "
            f"pseudo-log-likelihood; pseudo-perplexity on {len(texts)} held-out documents"
        )

        def piece_log_probs(params, tokens, positions, pieces):
            """tokens [B, L] with positions [B] masked -> log p(pieces [B]) there [B]."""
            masked = jnp.where(jnp.arange(tokens.shape[1]) == positions[:, None], mask_id, tokens)
            logits = logits_fn(params, masked)[jnp.arange(len(positions)), positions].astype(jnp.float32)
            return jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), pieces[:, None], axis=-1)[:, 0]

        self._piece_log_probs = jax.jit(piece_log_probs)

    def pseudo_log_likelihoods(self, params) -> np.ndarray:
        """float64 [2 x pairs + texts]: the PLL of every grammatical sentence, every ungrammatical one, every text."""
        scores = []
        for start in range(0, len(self.rows), self.batch_size):
            rows = self.rows[start : start + self.batch_size]
            fill = self.batch_size - len(rows)  # the last batch is padded with its first copy: one compiled shape
            take = np.concatenate([np.arange(start, start + len(rows)), np.full(fill, start)])
            log_p = self._piece_log_probs(
                params, jnp.asarray(self.tokens[self.rows[take]]), jnp.asarray(self.positions[take]),
                jnp.asarray(self.pieces[take]),
            )  # fmt: skip
            scores.append(np.asarray(log_p, np.float64)[: len(rows)])
        return np.bincount(self.rows, weights=np.concatenate(scores), minlength=len(self.tokens))

    def evaluate(self, params) -> dict[str, float]:
        pll = self.pseudo_log_likelihoods(params)
        n = self.num_pairs
        right = pll[:n] > pll[n : 2 * n]  # a tie is wrong
        metrics = {"minimal_pairs/accuracy": 100.0 * float(right.mean())}
        for phenomenon in dict.fromkeys(self.phenomena):
            metrics[f"minimal_pairs/{phenomenon}"] = 100.0 * float(right[self.phenomena == phenomenon].mean())
        pieces = np.bincount(self.rows, minlength=len(self.tokens))[2 * n :].sum()
        metrics["minimal_pairs/pseudo_perplexity"] = float(np.exp(-pll[2 * n :].sum() / pieces))
        return metrics
