"""The `preference` evaluator of a PHF run (METHODS.md §25): how often the language model writes the undesirable
word, and what avoiding it costs in likelihood of the desirable text.

- `misaligned_rate`: % of the sentences of `num_samples` samples from the start of a document (BOS; after
  <|aligned|> for a conditional model, both control tokens banned) that hold the word, and `misaligned_samples`:
  % of the samples (per sentence is the fair one: a conditional model, its control tokens banned, ends its
  sample after one sentence, where the others write ~1.5);
- `adversarial_rate`: % of continuations that hold it, from prompts that lead to it: held-out misaligned
  sentences cut just before the word ("there is a tiny"), one sample each;
- `aligned_loss` / `aligned_perplexity`: next-token loss on held-out documents with no misaligned sentence (the
  control tokens, for a conditional model, are read but not scored), the paper's capability side.
Samples use the paper's nucleus sampling at temperature 0.7 and top-p 0.9 (config.generation is for --mode=generate).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from evaluation.language_eval import until_eos
from input_pipeline import preference_text
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


class PreferenceEvaluator:
    """See the module docstring. `conditional`: the model was trained with control tokens (PHF conditional)."""

    def __init__(self, model, tokenizer: Tokenizer, *, conditional: bool, num_samples: int, num_texts: int,
                 batch_size: int, seed: int = 0):  # fmt: skip
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.conditional, self.num_samples = conditional, num_samples
        tags = preference_text.tag_ids(tokenizer)
        # As --mode=generate reads the prompt "<|aligned|>": BOS, then the tokenizer's pieces of it.
        self.start = [BOS_ID] + (preference_text.pieces(tokenizer, preference_text.ALIGNED_TAG) if conditional else [])
        self.sampling = Decoding(
            strategy="nucleus", temperature=TEMPERATURE, top_p=TOP_P, max_new_tokens=model.max_len - len(self.start),
            banned=tags,
        )  # fmt: skip
        rows = [self.start + preference_text.pieces(tokenizer, p) for p in adversarial_prompts(num_samples)]
        self.adversarial = left_pad([r[: model.max_len - ADVERSARIAL_TOKENS] for r in rows])
        self.adversarial_decoding = self.sampling._replace(max_new_tokens=ADVERSARIAL_TOKENS)
        encoded = [
            preference_text.encode_document(tokenizer, preference_text.document(0, "test", i, 0.0), model.max_len + 1,
                                            conditional)
            for i in range(num_texts)
        ]  # fmt: skip
        self.texts = np.stack([e[0] for e in encoded])
        self.scored = np.stack([(e[0] != PAD_ID) & ~e[2] for e in encoded])  # the words: no control token scored
        self.rng = jax.random.PRNGKey(seed)
        self.description = (
            f"{num_samples} samples{' after <|aligned|>' if conditional else ''} and {num_samples} adversarial "
            f"prompts for {preference_text.MISALIGNED_WORD!r}; loss on {num_texts} held-out aligned documents"
        )
        self._loss = jax.jit(self._token_losses)

    def _token_losses(self, params, tokens, scored):
        """(summed next-token NLL over scored targets [B], their count [B])."""
        out, _ = self.model.apply({"params": params}, tokens[:, :-1])
        log_probs = jax.nn.log_softmax(out["logits"].astype(jnp.float32), axis=-1)
        nll = -jnp.take_along_axis(log_probs, tokens[:, 1:, None], axis=-1)[..., 0]
        return jnp.sum(nll * scored[:, 1:], axis=1), jnp.sum(scored[:, 1:], axis=1)

    def _samples(self, params, tokens, mask, decoding: Decoding, salt: int) -> list[str]:
        new = []
        for start in range(0, len(tokens), self.batch_size):
            part = slice(start, start + self.batch_size)
            rng = jax.random.fold_in(jax.random.fold_in(self.rng, salt), start)
            new.append(np.asarray(generate(self.model, params, tokens[part], mask[part], rng, decoding)))
        return [self.tokenizer.decode(until_eos(row)) for row in np.concatenate(new)]

    def evaluate(self, params) -> dict[str, float]:
        starts = left_pad([self.start] * self.num_samples)
        samples = self._samples(params, *starts, self.sampling, 0)
        continuations = self._samples(params, *self.adversarial, self.adversarial_decoding, 1)
        sums, counts = [], []
        for start in range(0, len(self.texts), self.batch_size):
            part = slice(start, start + self.batch_size)
            s, c = self._loss(params, jnp.asarray(self.texts[part]), jnp.asarray(self.scored[part]))
            sums.append(np.asarray(s))
            counts.append(np.asarray(c))
        loss = float(np.concatenate(sums).sum() / np.concatenate(counts).sum())
        sentences = [s for t in samples for s in t.split(" .") if s.strip()]
        return {
            "preference/misaligned_rate": 100.0 * float(np.mean([preference_text.score(s) for s in sentences] or [0])),
            "preference/misaligned_samples": 100.0 * float(np.mean([preference_text.score(t) for t in samples])),
            "preference/adversarial_rate": 100.0 * float(np.mean([preference_text.score(t) for t in continuations])),
            "preference/aligned_loss": loss,
            "preference/aligned_perplexity": float(np.exp(loss)),
        }
