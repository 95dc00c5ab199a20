"""`python main.py --mode=generate --prompt=...`: continue prompts with a trained language model's latest
checkpoint, decoded as config.generation says (models/generation.py); a PHF run's continuations never write its
control tokens (the paper's sampling: the prompt sets the condition, e.g. "<|aligned|> there is a")."""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import ml_collections

from configs.errors import ConfigError
from evaluation.run import _latest_step, load_trained_run, run_tokenizer_path
from input_pipeline import preference_text
from input_pipeline.tokenizer import EOS_ID, load_tokenizer
from models.generation import Decoding, generate, left_pad, prompt_ids


def generate_text(config: ml_collections.ConfigDict, workdir: str, prompts: Sequence[str]) -> list[str]:
    """Each prompt followed by its continuation. ConfigError, before anything compiles, for a run that is not a
    language model, has no checkpoint, or a prompt that leaves no room for config.generation.max_new_tokens."""
    if config.model.kind != "decoder":
        raise ConfigError(
            "--mode=generate continues text with a language model; pass the config of one (configs/lm.py, "
            "configs/simctg.py), not a two-tower model's or a captioner's (their captions are in the run's summary)."
        )
    if not prompts or not all(p.strip() for p in prompts):
        raise ConfigError('--mode=generate needs text to continue; pass --prompt="..." (repeat it for several).')
    tokenizer_path = run_tokenizer_path(config, workdir)
    if _latest_step(workdir, config.keep_checkpoints) is None or not os.path.exists(tokenizer_path):
        raise ConfigError(f"{workdir} holds no trained language model; train it first with the same command "
                          "without --mode=generate.")  # fmt: skip
    tokenizer = load_tokenizer(tokenizer_path, config.text.tokenizer)
    context, new = config.model.decoder.max_len, config.generation.max_new_tokens
    ids = prompt_ids(tokenizer, prompts, 10 * context)
    for prompt, row in zip(prompts, ids, strict=True):
        if len(row) + new > context:
            raise ConfigError(
                f"The prompt {prompt[:40]!r} is {len(row)} tokens; with config.generation.max_new_tokens ({new}) "
                f"it exceeds the model's context of {context} tokens; shorten it or lower max_new_tokens."
            )
    model, tokenizer, params, _ = load_trained_run(config, workdir)
    tokens, mask = left_pad(ids)
    banned = preference_text.tag_ids(tokenizer) if config.data.name in preference_text.PHF_DATASETS else ()
    out = jax.device_get(generate(model, params, tokens, mask, jax.random.PRNGKey(config.seed),
                                  Decoding(**config.generation, banned=banned)))  # fmt: skip
    texts = []
    for prompt, row in zip(prompts, out, strict=True):
        row = list(row)
        texts.append(f"{prompt} {tokenizer.decode(row[: row.index(EOS_ID)] if EOS_ID in row else row)}".rstrip())
    return texts
