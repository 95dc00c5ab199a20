"""MultiCSR's training stage (Wang et al. 2024): supervised SimCSE whose in-batch false negatives, judged
by a frozen unsupervised-SimCSE encoder, are masked (losses/simcse.py, losses/false_negatives.py).

    python main.py --config=configs/simcse.py:mode=unsup --workdir=runs/simcse_unsup
    python main.py --config=configs/multicsr.py --workdir=runs/multicsr --config.init_from.workdir=runs/simcse_unsup

The frozen encoder is the text tower this run starts from (copied from init_from's run); the student
starts from it too. MultiCSR's LLM stages (generating and self-curating NLI triples) are out of
scope: its training stage runs on any triples (the embedded ones, or `data.name=nli`).
Keys of config.multicsr: those of config.simcse (mode, temperature, hard_negative_weight), plus
`threshold` (phi = 0.95: frozen cosine above which a candidate is a false negative), `mask_mode`
(`exclude`: the paper; `zero`: the official code's weight 0 on the logit) and `loss` (`ce`, or `bce`:
the official code's binary cross-entropy on the softmax entries). The Dense+tanh head runs in
training only, so the frozen copy encodes as the unsupervised run is evaluated.
Arguments: size, threshold (`configs/multicsr.py:threshold=1.01` masks nothing: the ablation, as its own run name).
"""

import ml_collections

from configs import common
from configs.simcse import text_only


def get_config(arg: str | None = None):
    arg = common.parse_arg(arg, size="tiny", threshold=0.95)
    config = text_only(common.get_base_config(f"size={arg.size}"), "shape_sentences")
    config.objective = "multicsr"
    config.model.text.dropout_rate = 0.1
    config.model.text_mlp_head = "train"
    config.init_from.param_prefixes = ("text_tower", "text_projection", "text_mlp")
    config.multicsr = ml_collections.ConfigDict(
        dict(
            mode="sup",
            temperature=0.05,
            hard_negative_weight=0.0,
            threshold=arg.threshold,
            mask_mode="exclude",
            loss="ce",
        )
    )
    return config
