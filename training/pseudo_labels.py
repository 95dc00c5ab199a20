"""PCP's step (2) (losses/pcp.py): the unlabelled pool of input_pipeline/acceptability_text.py labelled by a
prompt-based fine-tuned run (config.pcp.labeller), or uniformly at random for the control (`labeller='random'`).

The labeller reads the text with its own tokenizer; the PCP run must read it with the same one (both inherit the
pretrained MLM's through config.init_from.workdir), which `check_labeller` makes sure of before jax starts.
"""

from __future__ import annotations

import filecmp
import os

import ml_collections
import numpy as np
from absl import logging

from configs.errors import ConfigError
from evaluation.prompt_eval import encode_prompts, prompt_scores, slot_scorer
from input_pipeline import acceptability_text
from training.trained_runs import load_trained_run, run_config

RANDOM = "random"


def check_labeller(config: ml_collections.ConfigDict) -> None:
    """The labeller is a finished stage=prompt run whose tokenizer is the one this run inherits."""
    labeller = config.pcp.labeller
    if labeller == RANDOM:
        return
    key = "config.pcp.labeller"
    if not os.path.isdir(os.path.join(labeller, "checkpoints")):
        raise ConfigError(f"{key} {labeller!r} holds no checkpoints; train a configs/pcp.py:stage=prompt run there.")
    labeller_config = run_config(labeller)
    if labeller_config.objective != "pcp" or labeller_config.pcp.stage != "prompt":
        raise ConfigError(f"{key} {labeller!r} is no configs/pcp.py:stage=prompt run; name one, or 'random'.")
    ours = os.path.join(config.init_from.workdir, "tokenizer.model")
    theirs = os.path.join(labeller, "tokenizer.model")
    if config.init_from.workdir and not (
        os.path.isfile(ours) and os.path.isfile(theirs) and filecmp.cmp(ours, theirs, shallow=False)
    ):
        raise ConfigError(
            f"{key} {labeller!r} reads text with another tokenizer than config.init_from.workdir "
            f"{config.init_from.workdir!r}; fine-tune the labeller from the same pretrained run."
        )


def pseudo_labelled_pool(config: ml_collections.ConfigDict) -> tuple[list[dict], np.ndarray, float]:
    """(the config.pcp.unlabelled_size pool records, their pseudo-labels int [N], % that agree with the gold
    labels the method never reads)."""
    records = acceptability_text.pool(config.pcp.unlabelled_size)
    labeller = config.pcp.labeller
    if labeller == RANDOM:
        labels = np.random.default_rng(config.seed).integers(len(acceptability_text.VERBALIZER), size=len(records))
    else:
        labeller_config = run_config(labeller)
        model, tokenizer, params, step = load_trained_run(labeller_config, labeller)
        tokens, slots = encode_prompts(tokenizer, records, labeller_config.model.text.max_len)
        score = slot_scorer(model, acceptability_text.verbalizer_ids(tokenizer))
        scores = prompt_scores(score, params, tokens, slots, config.eval.batch_size)
        labels = np.argmax(scores, axis=1)
        labeller = f"{labeller} (step {step})"
    agreement = 100.0 * float(np.mean(labels == np.array([r["label"] for r in records])))
    logging.info("Pseudo-labelled %d texts with %s: %.1f%% agree with the gold labels", len(records), labeller,
                 agreement)  # fmt: skip
    return records, labels, agreement
