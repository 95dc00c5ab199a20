"""PCP — prompt-based continued pretraining (Shi & Lipani, NeurIPS 2023; METHODS.md §22) in miniature: a small
masked LM pretrained on child-directed text (CLIMB's corpus and model, `stage=pretrain`) learns to judge its
grammar's sentences by prompt-based fine-tuning, straight away, after task-adaptive pretraining (TAPT) on the
unlabelled task text, or after PCP: MLM on that text in the prompt template with pseudo-labels filled in.

    python main.py --config=configs/pcp.py:stage=pretrain --workdir=runs/pcp_mlm         # (0) the pretrained MLM
    python main.py --config=configs/pcp.py:stage=prompt --workdir=runs/pcp_ft \
        --config.init_from.workdir=runs/pcp_mlm                                          # (1) prompt-based FT
    python main.py --config=configs/pcp.py:stage=pcp --workdir=runs/pcp_pcp \
        --config.init_from.workdir=runs/pcp_mlm --config.pcp.labeller=runs/pcp_ft       # (2)+(3) PCP
    python main.py --config=configs/pcp.py:stage=prompt --workdir=runs/pcp_pcp_ft \
        --config.init_from.workdir=runs/pcp_pcp                                          # (4) FT again
    python main.py --config=configs/pcp.py:stage=tapt --workdir=runs/pcp_tapt \
        --config.init_from.workdir=runs/pcp_mlm                                          # TAPT, then FT from it

`python benchmarks/pcp_chain.py` runs the whole comparison at paired seeds. The task
(input_pipeline/acceptability_text.py): "the dogs near the box is happy ? [MASK] ." with the label words
yes / no, one sentence of a BLiMP-style minimal pair, grammatical or not with equal odds. Every stage is evaluated
by the `prompt_accuracy` evaluator on held-out sentences (evaluation/prompt_eval.py). The model is CLIMB's small
BERT (2 blocks of 128); its pretraining tokenizer holds the label words as single pieces, and every later stage
reads it (config.init_from.workdir). Labels: 256 per class, not LM-BFF's 16 — with 16 (or 64) this model's
prompt-based fine-tuning stays at chance (51%), so a labeller would pass PCP nothing but noise (docs/text.md).
Not run: RoBERTa-large, the 21 benchmarks, soft (DART) templates, 100 PCP epochs, best-by-dev checkpoints.
Config arguments: `stage` (`prompt`, the default, `pretrain`, `tapt` or `pcp`) and `size`.
"""

import ml_collections

from configs import common
from configs.climb import masked_lm_tower
from configs.evaluators import evaluator
from configs.simcse import text_only
from input_pipeline.acceptability_text import ACCEPTABILITY_DATASET
from input_pipeline.child_text import CHILD_DATASET
from losses.pcp import STAGES


def get_config(arg: str | None = None):
    arg = common.parse_arg(arg, stage="prompt", size="tiny")
    if arg.stage not in STAGES:
        raise ValueError(f"Unknown PCP stage {arg.stage!r}; use stage= one of {list(STAGES)}.")
    config = text_only(common.get_base_config(f"size={arg.size}"), ACCEPTABILITY_DATASET)
    config.objective = "pcp"
    config.evals = ml_collections.ConfigDict({"prompt_accuracy": evaluator("prompt_accuracy", prefix="")})
    masked_lm_tower(config)
    # the pretrained MLM: its tower and head (models/two_tower.py mlm_logits); its tokenizer comes with it
    config.init_from.param_prefixes = ("text_tower", "mlm_transform", "mlm_norm", "mlm_bias")
    config.eval.num_examples = 1000  # held-out sentences
    config.pcp = ml_collections.ConfigDict(
        dict(stage=arg.stage, labeller="", shots=256, unlabelled_size=4000, mlm_probability=0.15)
    )
    if arg.stage == "pretrain":  # CLIMB's baseline MLM (configs/climb.py), two thirds of its steps
        config.data.name = CHILD_DATASET
        config.data.train_size = 20_000
        config.batch_size = 128
        config.total_steps = 800
        config.optimizer.learning_rate = 1e-3
        config.optimizer.warmup_steps = 200
        config.eval_every_steps = config.checkpoint_every_steps = 400
    elif arg.stage == "prompt":  # LM-BFF: 1,000 steps of batch 8 at 1e-5 for RoBERTa-large; a small model, faster
        config.batch_size = 16
        config.total_steps = 600
        config.optimizer.learning_rate = 1e-3
        config.optimizer.warmup_steps = 30
        config.eval_every_steps = config.checkpoint_every_steps = 200
    else:  # PCP's: lr 1e-4, batch 128, warm-up 6%; 400 steps (~13 passes over the pool, theirs 100)
        config.batch_size = 128
        config.total_steps = 400
        config.optimizer.learning_rate = 5e-4
        config.optimizer.warmup_steps = 24
        config.eval_every_steps = config.checkpoint_every_steps = 200
    return config
