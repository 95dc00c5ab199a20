"""CLIMB — "Curriculum Learning for Infant-inspired Model Building" (Diehl Martinez et al., BabyLM 2023; METHODS.md
§26) in miniature: a small masked language model on child-directed text, trained with or without one of CLIMB's
three curricula, to test the paper's finding that none beats the non-curriculum baseline consistently.

    python main.py --config=configs/climb.py --workdir=runs/climb_baseline
    python main.py --config=configs/climb.py:curriculum=vocabulary --workdir=runs/climb_vocabulary
    python main.py --config=configs/climb.py:curriculum=data --workdir=runs/climb_data
    python main.py --config=configs/climb.py:curriculum=objective --workdir=runs/climb_objective

The corpus is embedded (input_pipeline/child_text.py): short child-directed utterances and longer story sentences
over the shapes world, every word's part of speech known by construction. The model is a BERT-style bidirectional
text tower with a tied masked-token head (models/two_tower.py `mlm_logits`) and, for the objective curriculum, a
word-class head (`tag_logits`). Curricula (losses/climb.py, input_pipeline/curriculum.py), each on CLIMB's linear
pacing from 10% at 6.25% of the steps to 100% at 87.5% (`pacing=` picks another curve):
- `vocabulary`: pieces past the allowed share of the vocabulary (by id, most frequent first) read as unknown;
- `data`: each step samples from the easiest share of the documents by unigram perplexity (`data_split`: the
  spoken utterances first, CLIMB's `data_split_spoken_first`);
- `objective`: the noun/verb word-class task for the first 12.5% of the steps, then MLM (CLIMB's pos_nv_mlm);
  `multitask`: every word class throughout and MLM from 12.5% (CLIMB's multitask_pos_all_mlm).
Evaluated by the `minimal_pairs` evaluator (evaluation/minimal_pairs.py): BLiMP-style pairs of the grammar scored
by pseudo-log-likelihood (agreement, agreement across an attractor, determiner number, adjective order), and the
pseudo-perplexity of held-out documents. Not run: CLIMB's corpus (BabyLM strict-small, 10M words), model
(pre-LN RoBERTa, 8 layers of 256; here BERT's post-LN tower) and 400k steps.
Config arguments: `curriculum` (`none`, the default, `vocabulary`, `data`, `data_split`, `objective`,
`multitask`), `pacing` (`linear`, the default, or quad, root, exp, log, step) and `size`.
"""

import ml_collections

from configs import common
from configs.evaluators import evaluator
from configs.simcse import text_only
from input_pipeline.child_text import CHILD_DATASET, POS_TAGS

CURRICULA = ("none", "vocabulary", "data", "data_split", "objective", "multitask")


def masked_lm_tower(config: ml_collections.ConfigDict) -> None:
    """The masked LM's text tower and tokenizer size, which configs/pcp.py continues from."""
    config.model.text.update(kind="bert", pool="first", activation="gelu", layer_norm_eps=1e-12, dropout_rate=0.1)
    config.model.text.max_len = 48
    config.text.vocab_size = 1024


def get_config(arg: str | None = None):
    arg = common.parse_arg(arg, curriculum="none", pacing="linear", size="tiny")
    if arg.curriculum not in CURRICULA:
        raise ValueError(f"Unknown CLIMB curriculum {arg.curriculum!r}; use curriculum= one of {list(CURRICULA)}.")
    config = text_only(common.get_base_config(f"size={arg.size}"), CHILD_DATASET)
    config.objective = "climb"
    config.evals = ml_collections.ConfigDict({"minimal_pairs": evaluator("minimal_pairs", prefix="")})
    masked_lm_tower(config)
    config.batch_size = 128  # CLIMB's
    config.total_steps = 1200
    config.eval_every_steps = 200
    config.checkpoint_every_steps = 400
    config.optimizer.learning_rate = 1e-3  # CLIMB's, with a quarter of the steps as warm-up (theirs: 100k of 400k)
    config.optimizer.warmup_steps = 300
    config.data.train_size = 20_000
    config.eval.num_examples = 300  # held-out documents of the pseudo-perplexity
    climb = dict(
        vocabulary="none", data="none", pacing=arg.pacing, pacing_start=0.0625, pacing_end=0.875,
        first_difficulty=0.1, mlm_window=(0.0, 1.0), pos_window=(0.0, 0.0), pos_classes=("NOUN", "VERB"),
        mlm_probability=0.15, pos_probability=0.4,
    )  # fmt: skip
    if arg.curriculum == "vocabulary":
        climb["vocabulary"] = "token_ids"
    elif arg.curriculum in ("data", "data_split"):
        climb["data"] = "unigram" if arg.curriculum == "data" else "spoken_first"
    elif arg.curriculum == "objective":
        climb.update(pos_window=(0.0, 0.125), mlm_window=(0.125, 1.0))
    elif arg.curriculum == "multitask":
        climb.update(pos_window=(0.0, 1.0), mlm_window=(0.125, 1.0), pos_classes=POS_TAGS)
    config.climb = ml_collections.ConfigDict(climb)
    return config
