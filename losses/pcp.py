"""PCP — "Don't Stop Pretraining? Make Prompt-based Fine-tuning Powerful Learner" (Shi & Lipani, NeurIPS 2023;
METHODS.md §22): prompt-based fine-tuning of a masked LM, and the continued pretraining before it.

The paper's pipeline, each step a run of configs/pcp.py (`stage=`), the next started from the last one's
checkpoint (config.init_from.workdir), after (0) `pretrain`: plain MLM on generic text (the embedded
child-directed corpus), its tokenizer trained with the label words as single pieces (LM-BFF's label words are
RoBERTa tokens):
  (1) `prompt` on the few labelled examples, from the pretrained MLM; (2) pseudo-label the unlabelled task text
  with that run (training/pseudo_labels.py); (3) `pcp`: plain MLM on the text rendered in the template WITH each
  pseudo-label's word, from the ORIGINAL MLM; (4) `prompt` again from the PCP run. `tapt` (task-adaptive
  pretraining: plain MLM on the raw unlabelled text) is the conventional continued pretraining it is compared with.

Losses on a batch:
- `mlm` (stages `pretrain`, `tapt` and `pcp`): BERT's 15% masking of "text" [B, L] (80/10/10), token-mean cross-entropy
  through the tied output layer (losses/masked_lm.py); the label word is masked only as often as any piece
  (PCP's always_mask_label_token False);
- `prompt`: the label word's piece at "slot" [B] replaced by [MASK], the head's logits there restricted to the
  verbalizer's pieces (extra["verbalizer"] int32 [C], from the run's tokenizer: training/objective_inputs.py), and
  cross-entropy against "label" [B] — LM-BFF's prompt-based fine-tuning, with its dropout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from configs.errors import ConfigError
from losses.masked_lm import mask_id_of, mask_pieces, mlm_loss

STAGES = ("pretrain", "prompt", "tapt", "pcp")


def slot_logits(params, tokens, slot, verbalizer, *, model, deterministic: bool = True, rngs=None) -> jax.Array:
    """tokens int32 [B, L], slot int32 [B], verbalizer int32 [C] -> float32 [B, C]: the MLM head's logits of the
    label words at the slot, the slot masked."""
    masked = jnp.where(jnp.arange(tokens.shape[1]) == slot[:, None], mask_id_of(params), tokens)
    logits = model.apply(
        {"params": params}, masked, deterministic=deterministic, method=model.mlm_logits, rngs=rngs or {}
    )
    at_slot = logits[jnp.arange(tokens.shape[0]), slot].astype(jnp.float32)
    return at_slot[:, verbalizer]


def loss(params, batch, extra, rng, *, model, config):
    """The stage's loss (module docstring)."""
    mask_rng, dropout = jax.random.split(rng)
    if config.pcp.stage == "prompt":
        scores = slot_logits(
            params, batch["text"], batch["slot"], extra["verbalizer"], model=model, deterministic=False,
            rngs={"dropout": dropout},
        )  # fmt: skip
        log_p = jax.nn.log_softmax(scores, axis=-1)
        value = -jnp.mean(jnp.take_along_axis(log_p, batch["label"][:, None], axis=-1))
        return value, {"prompt_accuracy": jnp.mean(jnp.argmax(scores, axis=-1) == batch["label"])}
    tokens = batch["text"]
    inputs, chosen = mask_pieces(tokens, mask_rng, mask_id_of(params), config.pcp.mlm_probability)
    logits = model.apply(
        {"params": params}, inputs, deterministic=False, method=model.mlm_logits, rngs={"dropout": dropout}
    )
    value, accuracy = mlm_loss(logits, jnp.where(chosen, tokens, -1))
    return value, {"mlm_accuracy": accuracy}


def init_extra(params, config, inputs=None) -> dict:
    """The verbalizer's pieces (inputs["verbalizer"], training/objective_inputs.py)."""
    del params, config
    return {"verbalizer": jnp.asarray(inputs["verbalizer"], jnp.int32)}


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError, naming the key and the fix, for a bad config.pcp value."""
    c = config.pcp
    if c.stage not in STAGES:
        raise ConfigError(f"config.pcp.stage={c.stage!r} is not one of {list(STAGES)}; use one of them.")
    if not 0 < c.mlm_probability < 1:
        raise ConfigError(f"config.pcp.mlm_probability must lie in (0, 1), not {c.mlm_probability!r}.")
    if c.stage == "pcp" and not c.labeller:
        raise ConfigError(
            "config.pcp.stage='pcp' trains on pseudo-labelled text; set config.pcp.labeller to the --workdir of a "
            "stage=prompt run (or 'random' for the control)."
        )
    if c.stage != "pcp" and c.labeller:
        raise ConfigError(
            f"config.pcp.labeller is read only by stage='pcp', and this run's stage is {c.stage!r}; drop it."
        )
    if config.text.tokenizer != "sentencepiece":
        raise ConfigError(
            f"PCP's label words are pieces of the run's own SentencePiece tokenizer, not a {config.text.tokenizer!r} "
            "one; set config.text.tokenizer='sentencepiece'."
        )
    if c.shots < 1 or c.unlabelled_size < 1:
        raise ConfigError("config.pcp.shots and config.pcp.unlabelled_size must be at least 1.")
