"""CLIMB (Diehl Martinez et al., BabyLM 2023; METHODS.md §26): a small masked language model trained under
curricula of the vocabulary, the data, or the objective; the paper's finding is that none beats its own
non-curriculum baseline consistently.

The loss of a step, its index s of config.total_steps T (counted in `extra["step"]`, so that it stays pure):
    L = [s in mlm window] MLM + [s in pos window] POS
- MLM: BERT's 15% of the pieces (80% [MASK], 10% a random piece, 10% kept), token-mean cross-entropy through the
  tied output layer (losses/masked_lm.py, models/two_tower.py `mlm_logits`);
- POS (CLIMB's word-class prediction, src/objective_curriculum/units/pos.py): the pieces of the words whose tag is
  a class of `pos_classes` are masked at 0.4, the other pieces at 0.15 (then 80/10/10 as above), and a tag head
  (`tag_logits`: dense, GELU, LayerNorm, linear, as RoBERTa's LM head) predicts each masked piece's class: 0 for
  "other", then the tags of `pos_classes` in order (CLIMB's NOUN, VERB; or every tag of
  input_pipeline/child_text.POS_TAGS); the classes come with the batch ("tags": int32 [B, L], each piece's word's
  class, -1 off words: input_pipeline/text_transform.TaggedTextTransform);
- the vocabulary curriculum (`vocabulary="token_ids"`): every learnt piece outside the d(s) share of them, ranked
  from the most probable (the tokenizer's own order: input_pipeline/curriculum.piece_ranks), becomes the unknown
  piece, in the inputs and the targets, d the pacing function (input_pipeline/curriculum.py); CLIMB hides the BPE
  ids past d x V, the last merges.
The data curriculum (`data`) is the input pipeline's (input_pipeline/curriculum.CurriculumSource): the loss is the
baseline's. Windows are fractions of T, [start, end); an empty window ((0, 0)) turns a task off, and a task outside
its window is not computed (lax.cond; its logged loss and accuracy read 0 there).

Options (config.climb): `vocabulary` ("none" | "token_ids"), `data` ("none" | "unigram" | "spoken_first"),
`pacing` (a curve of input_pipeline/curriculum.PACING_CURVES), `pacing_start`, `pacing_end`, `first_difficulty`
(CLIMB's 0.0625, 0.875 and 0.1), `mlm_window`, `pos_window`, `pos_classes` (tag names),
`mlm_probability` (0.15), `pos_probability` (0.4), `dropout` is the text tower's own (config.model.text).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from configs.errors import ConfigError
from losses.masked_lm import FIRST_PIECE, UNKNOWN_ID, mask_id_of, mask_pieces, mlm_loss
from losses.pacing import PACING_CURVES, Schedule, count_step, pacing
from models.two_tower import pos_task

VOCABULARY_CURRICULA = ("none", "token_ids")
DATA_CURRICULA = ("none", "unigram", "spoken_first")


def schedule(config: ml_collections.ConfigDict) -> Schedule:
    """The run's pacing function (one for whichever curriculum is on)."""
    c = config.climb
    return Schedule(c.pacing, config.total_steps, c.pacing_start, c.pacing_end, c.first_difficulty)


def capped_vocabulary(tokens: jax.Array, difficulty: jax.Array, ranks: jax.Array) -> jax.Array:
    """int32 [N, L] -> the same with every piece outside the `difficulty` share of the ranked pieces made the
    unknown piece; `ranks` int32 [vocab] (input_pipeline/curriculum.piece_ranks: 0 the most probable, -1 never
    hidden)."""
    rank = ranks[tokens]
    return jnp.where(rank >= difficulty * (jnp.max(ranks) + 1), UNKNOWN_ID, tokens)


def _active(step: jax.Array, window, total_steps: int) -> jax.Array:
    start, end = window
    return (step >= start * total_steps) & (step < end * total_steps)


def loss(params, batch, extra, rng, *, model, config):
    """CLIMB's step loss (module docstring) on a batch of "text" [B, L] and, with a POS task, "tags" [B, L]."""
    c, total = config.climb, config.total_steps
    step = extra["step"]
    tokens = batch["text"]
    mask_id = mask_id_of(params)
    difficulty = pacing(step, schedule(config), xp=jnp)
    if c.vocabulary == "token_ids":
        tokens = capped_vocabulary(tokens, difficulty, extra["piece_rank"])
    mlm_rng, mlm_dropout, pos_rng, pos_dropout = jax.random.split(rng, 4)
    value = jnp.zeros((), jnp.float32)
    # The pacing's difficulty where a curriculum follows it (the data curriculum's is the pipeline's, the same curve).
    metrics = {"difficulty": difficulty} if c.vocabulary != "none" or c.data != "none" else {}
    if c.vocabulary != "none":
        metrics["unknown_share"] = _unknown_share(tokens)
    if c.mlm_window[1] > c.mlm_window[0]:

        def masked_lm():
            inputs, chosen = mask_pieces(tokens, mlm_rng, mask_id, c.mlm_probability)
            logits = model.apply(
                {"params": params}, inputs, deterministic=False, method=model.mlm_logits, rngs={"dropout": mlm_dropout}
            )
            return mlm_loss(logits, jnp.where(chosen, tokens, -1))

        on = _active(step, c.mlm_window, total)
        mlm, accuracy = _when(on, masked_lm)
        value = value + mlm
        metrics.update(mlm=mlm, mlm_accuracy=accuracy, mlm_on=on.astype(jnp.float32))
    if pos_task(c):
        classes = batch["tags"]

        def word_classes():
            probability = jnp.where(classes > 0, c.pos_probability, c.mlm_probability)
            inputs, chosen = mask_pieces(tokens, pos_rng, mask_id, probability)
            logits = model.apply(
                {"params": params}, inputs, deterministic=False, method=model.tag_logits, rngs={"dropout": pos_dropout}
            )
            return mlm_loss(logits, jnp.where(chosen & (classes >= 0), classes, -1))

        on = _active(step, c.pos_window, total)
        pos, accuracy = _when(on, word_classes)
        value = value + pos
        metrics.update(pos=pos, pos_accuracy=accuracy, pos_on=on.astype(jnp.float32))
    return value, metrics


def _when(on: jax.Array, task) -> tuple[jax.Array, jax.Array]:
    """task() -> (loss, accuracy) at a step inside its window, (0, 0) outside without running it (lax.cond: the
    objective curriculum's idle head costs nothing)."""
    return jax.lax.cond(on, task, lambda: (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)))


def _unknown_share(tokens: jax.Array) -> jax.Array:
    """The share of the pieces (not padding or markers) that are the unknown piece."""
    pieces = (tokens >= FIRST_PIECE) | (tokens == UNKNOWN_ID)
    return jnp.sum(tokens == UNKNOWN_ID) / jnp.maximum(jnp.sum(pieces), 1)


def init_extra(params, config, inputs=None) -> dict:
    """The steps taken (0), the curricula's clock; and each piece's rank for the vocabulary curriculum
    (inputs["piece_rank"], training/objective_inputs.py)."""
    del params, config
    return {"step": jnp.zeros((), jnp.int32), "piece_rank": jnp.asarray(inputs["piece_rank"], jnp.int32)}


update_extra = count_step


def validate(config) -> None:
    """Raises ConfigError, naming the key and the fix, for a bad config.climb value."""
    c = config.climb
    choices = {"vocabulary": VOCABULARY_CURRICULA, "data": DATA_CURRICULA, "pacing": PACING_CURVES}
    for key, allowed in choices.items():
        if c[key] not in allowed:
            raise ConfigError(f"config.climb.{key}={c[key]!r} is not one of {list(allowed)}; use one of them.")
    if not 0 <= c.pacing_start < c.pacing_end <= 1:
        raise ConfigError(
            f"config.climb.pacing_start ({c.pacing_start}) and pacing_end ({c.pacing_end}) must satisfy "
            "0 <= start < end <= 1 (fractions of config.total_steps); CLIMB's are 0.0625 and 0.875."
        )
    if not 0 < c.first_difficulty <= 1:
        raise ConfigError(
            f"config.climb.first_difficulty must lie in (0, 1], not {c.first_difficulty!r}; CLIMB's is 0.1."
        )
    for key in ("mlm_window", "pos_window"):
        window = tuple(c[key])
        if len(window) != 2 or not 0 <= window[0] <= window[1] <= 1:
            raise ConfigError(
                f"config.climb.{key}={window!r} must be (start, end) fractions of the run with 0 <= start <= end <= 1; "
                "(0, 0) turns the task off."
            )
    if c.mlm_window[1] <= c.mlm_window[0] and c.pos_window[1] <= c.pos_window[0]:
        raise ConfigError(
            "config.climb.mlm_window and pos_window are both empty, so nothing trains; set mlm_window=(0, 1)."
        )
    for key in ("mlm_probability", "pos_probability"):
        if not 0 < c[key] < 1:
            raise ConfigError(f"config.climb.{key} must lie in (0, 1), not {c[key]!r}.")
