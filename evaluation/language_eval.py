"""Evaluators of a decoder language model (config.model.kind 'decoder'): held-out perplexity and what its
decoding strategies generate (`language`), and knowledge-conflict question answering (`knowledge_conflict`).

Generation metrics follow SimCTG's measure script, on the whitespace words of each continuation:
rep-n = 100 (1 - unique n-grams / n-grams), averaged over continuations; diversity = prod_{n=2..4} (1 - rep-n/100);
continuations are exactly config.generation.max_new_tokens long (end of text ruled out, as SimCTG evaluates
fixed-length continuations); coherence = the mean log-probability per token of the continuation given its
prompt under the run's own LM (a likelihood measure: greedy decoding maximises it step by step, so compare it
across strategies with that in mind); length = words per continuation.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from input_pipeline import lm_text
from input_pipeline.tokenizer import EOS_ID, PAD_ID, Tokenizer
from models.generation import Decoding, context_aware_generate, generate, left_pad, prompt_ids

# CAD's fixed α for question answering (METHODS.md §17); AdaCAD is α < 0 in models/generation.py.
CAD_ALPHA = 1.0
ANSWER_TOKENS = 4


def repetition(texts: Sequence[str], n: int) -> float:
    """rep-n in percent, averaged over the texts that have at least one n-gram."""
    values = []
    for text in texts:
        words = text.split()
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        if grams:
            values.append(100.0 * (1.0 - len(set(grams)) / len(grams)))
    return float(np.mean(values)) if values else 0.0


def generation_metrics(texts: Sequence[str]) -> dict[str, float]:
    """rep-2, rep-3, rep-4, diversity and length (words) of generated continuations."""
    reps = {f"rep-{n}": repetition(texts, n) for n in (2, 3, 4)}
    diversity = float(np.prod([1.0 - r / 100.0 for r in reps.values()]))
    return {**reps, "diversity": 100.0 * diversity, "length": float(np.mean([len(t.split()) for t in texts]))}


def until_eos(row) -> list[int]:
    """Generated ids up to their first EOS (padding dropped)."""
    ids = [int(t) for t in row]
    return ids[: ids.index(EOS_ID)] if EOS_ID in ids else [t for t in ids if t != PAD_ID]


class LanguageEvaluator:
    """Perplexity on held-out texts and generation metrics for each strategy in `strategies` (a Decoding from
    config.generation with the strategy replaced), from the first `prompt_words` words of held-out texts."""

    def __init__(self, model, tokenizer: Tokenizer, generation, *, texts: Sequence[str], prompts: Sequence[str],
                 strategies: Sequence[str], batch_size: int, seed: int = 0):  # fmt: skip
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.max_len = model.max_len
        self.texts = tokenizer.encode(list(texts), self.max_len + 1)
        prompt_budget = self.max_len - generation.max_new_tokens
        self.prompts = left_pad(prompt_ids(tokenizer, prompts, prompt_budget))
        # Fixed-length continuations (EOS ruled out), as SimCTG's evaluation: degeneration shows in long text.
        fixed = dict(generation, min_new_tokens=generation.max_new_tokens)
        self.decodings = {s: Decoding(**{**fixed, "strategy": s}) for s in strategies}
        self.rng = jax.random.PRNGKey(seed)
        self.description = f"perplexity on {len(texts)} held-out texts" + (
            f"; {len(prompts)} prompts x {list(strategies)}" if strategies else ""
        )
        self._loss = jax.jit(self._token_losses)

    def _token_losses(self, params, tokens):
        """Summed next-token NLL and target count per row: ([B], [B])."""
        out, _ = self.model.apply({"params": params}, tokens[:, :-1])
        targets = tokens[:, 1:]
        log_probs = jax.nn.log_softmax(out["logits"], axis=-1)
        nll = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
        weights = targets != PAD_ID
        return jnp.sum(nll * weights, axis=1), jnp.sum(weights, axis=1)

    def log_likelihood(self, params, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """rows [N, L] (BOS, tokens, EOS/padding) -> (summed NLL [N], targets [N]), in batches."""
        sums, counts = [], []
        for start in range(0, len(rows), self.batch_size):
            s, c = self._loss(params, jnp.asarray(rows[start : start + self.batch_size]))
            sums.append(np.asarray(s))
            counts.append(np.asarray(c))
        return np.concatenate(sums), np.concatenate(counts)

    def evaluate(self, params) -> dict[str, float]:
        nll, count = self.log_likelihood(params, self.texts)
        token_loss = float(nll.sum() / count.sum())
        metrics = {"language/token_loss": token_loss, "language/perplexity": float(np.exp(token_loss))}
        tokens, mask = self.prompts
        for name, decoding in self.decodings.items():
            new = []
            for start in range(0, len(tokens), self.batch_size):
                part = slice(start, start + self.batch_size)
                rng = jax.random.fold_in(self.rng, start)
                new.append(np.asarray(generate(self.model, params, tokens[part], mask[part], rng, decoding)))
            continuations = [until_eos(row) for row in np.concatenate(new)]
            texts = [self.tokenizer.decode(ids) for ids in continuations]
            metrics.update({f"language/{name}/{k}": v for k, v in generation_metrics(texts).items()})
            metrics[f"language/{name}/coherence"] = self._coherence(params, continuations)
        return metrics

    def _coherence(self, params, continuations: list[list[int]]) -> float:
        """Mean log-probability per token of each continuation (with its EOS) given its prompt."""
        tokens, mask = self.prompts
        prompt_rows = [list(row[m]) for row, m in zip(tokens, mask, strict=True)]
        rows = np.zeros((len(prompt_rows), self.max_len + 1), np.int32)
        prompt_only = np.zeros_like(rows)
        for i, (prompt, new) in enumerate(zip(prompt_rows, continuations, strict=True)):
            full = (prompt + new + [EOS_ID])[: self.max_len + 1]
            rows[i, : len(full)] = full
            prompt_only[i, : len(prompt)] = prompt
        nll, count = self.log_likelihood(params, rows)
        nll_prompt, count_prompt = self.log_likelihood(params, prompt_only)
        per_row = -(nll - nll_prompt) / np.maximum(count - count_prompt, 1)
        return float(np.mean(per_row))


class KnowledgeConflictEvaluator:
    """Open-book questions on the memorised entities of input_pipeline/lm_text.py whose context agrees with the
    memorised fact or swaps it: accuracy of the context's answer under greedy decoding with the context, CAD
    (α = 1) and AdaCAD (α_t = JSD), per split and mixed (their mean); AdaCAD's mean α_t per split; closed-book
    accuracy (the memorised answer, no context) as the check that the facts were learnt."""

    description = "knowledge-conflict questions on the embedded facts (input_pipeline/lm_text.py)"

    def __init__(self, model, tokenizer: Tokenizer):
        self.model, self.tokenizer = model, tokenizer
        budget = model.max_len - ANSWER_TOKENS
        self.splits = {}
        items = {kind: lm_text.conflict_questions(kind) for kind in ("conflict", "agreement")}
        # Both splits padded to one length: one compiled decoder serves every split and decoder.
        with_context = left_pad(prompt_ids(tokenizer, [p for kind in items for p, _, _ in items[kind]], budget))
        plain = left_pad(
            prompt_ids(tokenizer, [p.split(" . ", 1)[1] for kind in items for p, _, _ in items[kind]], budget)
        )
        for i, kind in enumerate(items):
            rows = slice(i * len(items[kind]), (i + 1) * len(items[kind]))
            self.splits[kind] = (
                tuple(x[rows] for x in with_context),
                tuple(x[rows] for x in plain),
                [a for _, a, _ in items[kind]],
            )
        closed = lm_text.closed_book_questions()
        self.closed = (left_pad(prompt_ids(tokenizer, [q for q, _ in closed], budget)), [a for _, a in closed])

    def _answers(self, tokens) -> list[str]:
        return [(self.tokenizer.decode(until_eos(row)).split() or [""])[0] for row in np.asarray(tokens)]

    def evaluate(self, params) -> dict[str, float]:
        metrics = {}
        for kind, ((context, context_mask), (plain, plain_mask), answers) in self.splits.items():
            for name, alpha in (("greedy", 0.0), ("cad", CAD_ALPHA), ("adacad", -1.0)):
                tokens, alphas = context_aware_generate(
                    self.model, params, context, context_mask, plain, plain_mask, ANSWER_TOKENS, alpha
                )
                said = self._answers(tokens)
                metrics[f"conflict_qa/{kind}/{name}"] = 100.0 * float(
                    np.mean([s == a for s, a in zip(said, answers, strict=True)])
                )
                if name == "adacad":
                    metrics[f"conflict_qa/{kind}/adacad_alpha"] = float(np.mean(np.asarray(alphas)[:, 0]))
        for name in ("greedy", "cad", "adacad"):
            metrics[f"conflict_qa/mixed/{name}"] = 0.5 * (
                metrics[f"conflict_qa/conflict/{name}"] + metrics[f"conflict_qa/agreement/{name}"]
            )
        (tokens, mask), answers = self.closed
        new = generate(self.model, params, tokens, mask, jax.random.PRNGKey(0), Decoding("greedy", ANSWER_TOKENS))
        said = self._answers(new)
        metrics["conflict_qa/closed_book"] = 100.0 * float(
            np.mean([s == a for s, a in zip(said, answers, strict=True)])
        )
        return metrics
