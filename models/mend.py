"""MEND's model (Li et al. 2024, METHODS.md §23): a small distiller that reads the demonstrations D and writes k
vectors S_D, which a frozen language model reads in place of D.

The distiller is a DecoderLM of its own sizes whose vocabulary is the language model's plus k summary ids: D's
tokens, then the k summary ids (learnable embedding rows, the paper's "virtual demonstration" tokens), and the
distiller's last-layer states at those k slots, projected to the language model's width, are S_D [B, k, W]. The
language model reads [S_D; x] (models/language_model.py's `prefix`) where in-context learning reads [D; x].

Params: {"distiller": a DecoderLM's, "project": {kernel [Wd, W], bias [W]}, "lm": the language model's}, so a
trained language-model run's checkpoint loads into "lm" as it is (training/caption_task.py) and
configs/mend.py freezes it; `distiller_from_language_model` starts the distiller as a copy of it.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from models.language_model import DecoderLM


class MendModel(nn.Module):
    """demos [B, Ld] (right-padded, room for k more), demo_length [B] int, query [B, C] -> the language model's
    {"logits" [B, C, V], "hidden"} and cache, reading S_D before the query."""

    lm: DecoderLM
    distiller: DecoderLM  # vocab_size = lm.vocab_size + virtual_tokens
    virtual_tokens: int

    def setup(self):
        self.project = nn.Dense(self.lm.width, name="project")

    def summarise(self, demos: jax.Array, demo_length: jax.Array) -> jax.Array:
        """S_D [B, k, lm width]: the distiller's states at the k summary ids written after each row's demos."""
        slots = demo_length[:, None] + jnp.arange(self.virtual_tokens)  # [B, k]
        summary_ids = jnp.broadcast_to(self.lm.vocab_size + jnp.arange(self.virtual_tokens), slots.shape)
        rows = jnp.arange(demos.shape[0])[:, None]
        tokens = jnp.asarray(demos).at[rows, slots].set(summary_ids)
        out, _ = self.distiller(tokens)
        return self.project(out["hidden"][rows, slots])

    def full(self, tokens: jax.Array):
        """The language model alone on tokens [B, C] (in-context learning reads D in its tokens)."""
        return self.lm(tokens)

    def __call__(self, demos: jax.Array, demo_length: jax.Array, query: jax.Array):
        return self.lm(query, prefix=self.summarise(demos, demo_length))


def distiller_from_language_model(params: dict, virtual_tokens: int, seed: int) -> dict:
    """params with "distiller" a copy of the language model's (the paper's distiller is a pretrained language
    model too): every array the same, and the k summary rows of its token embedding copies of k vocabulary rows
    drawn at random (the paper's initialisation of its summary embeddings). The sizes must be the language
    model's (configs/mend.py: config.mend.distiller_init 'lm')."""
    lm = jax.tree.map(np.asarray, params["lm"])
    embedding = lm["token_embedding"]["embedding"]
    rows = np.random.default_rng(seed).choice(embedding.shape[0], size=virtual_tokens, replace=False)
    distiller = jax.tree.map(np.copy, lm)
    distiller["token_embedding"]["embedding"] = np.concatenate([embedding, embedding[rows]])
    return {**params, "distiller": distiller}
