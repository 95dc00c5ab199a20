"""The `preference` evaluator of a PHF run (METHODS.md §25): how often the language model writes the undesirable
word, how likely it finds misaligned text, and what avoiding it costs in likelihood of the aligned text.

- `misaligned_rate`: % of the sentences of `num_samples` samples from the start of a document (BOS; after
  <|aligned|> for a conditional model, both control tokens banned) that hold the word, and `misaligned_samples`:
  % of the samples (per sentence is the fair one: a conditional model, its control tokens banned, ends its
  sample after one sentence, where the others write ~1.5);
- `adversarial_rate`: % of continuations that hold it, from prompts that lead to it: held-out misaligned
  sentences cut just before the word ("there is a tiny"), one sample each;
- `aligned_loss` / `aligned_perplexity`: next-token loss on the aligned sentences of held-out documents, the paper's
  capability side; `misaligned_loss`: the same on misaligned sentences (higher: the model is less inclined to
  write them). A conditional model reads <|aligned|> before every sentence (asked for aligned text); control
  tokens are read, not scored.
The held-out documents are 500 embedded aligned and 500 misaligned ones, or (`path`) your held-out scored JSON
Lines, where the rates are not measured: they need the embedded rule as the scorer of samples.
Samples use the paper's nucleus sampling at temperature 0.7 and top-p 0.9 (config.generation is for --mode=generate).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from evaluation.language_eval import until_eos
from input_pipeline import preference_text
from input_pipeline.preference_files import Scored
from input_pipeline.tokenizer import BOS_ID, PAD_ID, Tokenizer
from models.generation import Decoding, generate, left_pad

TEMPERATURE, TOP_P = 0.7, 0.9
ADVERSARIAL_TOKENS = 8  # the word comes right after the prompt, within a few pieces


def adversarial_prompts(count: int) -> list[str]:
    """The text of `count` held-out misaligned sentences up to (not including) the undesirable word."""
    prompts, index = [], 0
    while len(prompts) < count:
        (sentence,) = preference_text.document(0, "adversarial", index, 1.0)[:1]
        prompts.append(sentence.split(f" {preference_text.MISALIGNED_WORD}")[0])
        index += 1
    return prompts


def embedded_documents(count: int) -> list[Scored]:
    """`count` held-out aligned documents, then `count` misaligned ones (every sentence misaligned)."""
    documents = []
    for split, rate in (("test", 0.0), ("test_misaligned", 1.0)):
        for i in range(count):
            doc = preference_text.document(0, split, i, rate)
            documents.append((doc, tuple(map(preference_text.score, doc))))
    return documents


class PreferenceEvaluator:
    """See the module docstring. `conditional`: the model was trained with control tokens (PHF conditional);
    `documents`: the held-out (sentences, misaligned flags); `num_samples` 0: no sampled rates (your documents)."""

    def __init__(self, model, tokenizer: Tokenizer, *, conditional: bool, documents: list[Scored], num_samples: int,
                 batch_size: int, seed: int = 0):  # fmt: skip
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.num_samples = num_samples
        tags = preference_text.tag_ids(tokenizer)
        # As --mode=generate reads the prompt "<|aligned|>": BOS, then the tokenizer's pieces of it.
        self.start = [BOS_ID] + (preference_text.pieces(tokenizer, preference_text.ALIGNED_TAG) if conditional else [])
        self.sampling = Decoding(
            strategy="nucleus", temperature=TEMPERATURE, top_p=TOP_P, max_new_tokens=model.max_len - len(self.start),
            banned=tags,
        )  # fmt: skip
        rows = [self.start + preference_text.pieces(tokenizer, p) for p in adversarial_prompts(num_samples)]
        self.adversarial = left_pad([r[: model.max_len - ADVERSARIAL_TOKENS] for r in rows]) if rows else None
        self.adversarial_decoding = self.sampling._replace(max_new_tokens=ADVERSARIAL_TOKENS)
        encoded = [
            preference_text.encode_document(tokenizer, doc, flags, model.max_len + 1, conditional, all_aligned=True)
            for doc, flags in documents
        ]
        self.texts = np.stack([e[0] for e in encoded])
        words = np.stack([(e[0] != PAD_ID) & ~e[2] for e in encoded])  # no control token scored
        misaligned = np.stack([e[1] != 0 for e in encoded])
        self.masks = {"aligned": words & ~misaligned, "misaligned": words & misaligned}
        self.rng = jax.random.PRNGKey(seed)
        counts = [sum(not any(f) for _, f in documents), sum(any(f) for _, f in documents)]
        self.description = (
            f"{num_samples} samples{' after <|aligned|>' if conditional else ''} and {num_samples} adversarial "
            f"prompts for {preference_text.MISALIGNED_WORD!r}; "
            if num_samples
            else ""
        ) + f"losses on {counts[0]} aligned and {counts[1]} other held-out documents"
        self._nll = jax.jit(self._token_nll)

    def _token_nll(self, params, tokens):
        """Next-token NLL of every target [B, L - 1]."""
        out, _ = self.model.apply({"params": params}, tokens[:, :-1])
        log_probs = jax.nn.log_softmax(out["logits"].astype(jnp.float32), axis=-1)
        return -jnp.take_along_axis(log_probs, tokens[:, 1:, None], axis=-1)[..., 0]

    def _samples(self, params, tokens, mask, decoding: Decoding, salt: int) -> list[str]:
        new = []
        for start in range(0, len(tokens), self.batch_size):
            part = slice(start, start + self.batch_size)
            rng = jax.random.fold_in(jax.random.fold_in(self.rng, salt), start)
            new.append(np.asarray(generate(self.model, params, tokens[part], mask[part], rng, decoding)))
        return [self.tokenizer.decode(until_eos(row)) for row in np.concatenate(new)]

    def evaluate(self, params) -> dict[str, float]:
        nll = np.concatenate([
            np.asarray(self._nll(params, jnp.asarray(self.texts[s : s + self.batch_size])))
            for s in range(0, len(self.texts), self.batch_size)
        ])  # fmt: skip
        metrics = {}
        for name, mask in self.masks.items():
            if mask[:, 1:].any():
                metrics[f"preference/{name}_loss"] = float(nll[mask[:, 1:]].mean())
        if "preference/aligned_loss" in metrics:
            metrics["preference/aligned_perplexity"] = float(np.exp(metrics["preference/aligned_loss"]))
        if not self.num_samples:
            return metrics
        samples = self._samples(params, *left_pad([self.start] * self.num_samples), self.sampling, 0)
        continuations = self._samples(params, *self.adversarial, self.adversarial_decoding, 1)
        sentences = [s for t in samples for s in t.split(" .") if s.strip()]
        score = preference_text.score
        return {
            "preference/misaligned_rate": 100.0 * float(np.mean([score(s) for s in sentences] or [0])),
            "preference/misaligned_samples": 100.0 * float(np.mean([score(t) for t in samples])),
            "preference/adversarial_rate": 100.0 * float(np.mean([score(t) for t in continuations])),
            **metrics,
        }
