"""SPACE-2 (He et al., COLING 2022; METHODS.md §20): a dialog encoder pretrained with soft multi-view SupCon over the
semantic trees of labelled utterances, SimCSE-style on unlabelled ones, and MLM on both (losses/space2.py).

    python main.py --config=configs/space2.py --workdir=runs/space2                      # soft, ten views
    python main.py --config=configs/space2.py:supervision=hard --workdir=runs/supcon     # same intent = positive
    python main.py --config=configs/space2.py:supervision=none --workdir=runs/self       # labels unused

Trains a bidirectional text tower (BERT-style, read at its first token, dropout 0.2 as SPACE-2's pre-training)
on the embedded commands over the shapes world (input_pipeline/dialog_frames.py): each batch holds 64 labelled
utterances with their frames (10% of the commands are labelled) and 64 unlabelled ones. Evaluated by intent and
slot probes on held-out commands (evaluation/dialog_eval.py). Keys of config.space2: `views` (the views whose
heads are trained and scored), `supervised`, `temperature` and `base_temperature` (0.07), `mlm_weight` (0.1),
`mlm_probability` (0.15) and `labelled_fraction` (of the commands). The paper's encoder (ConvBERT, 12 layers of
768), its data (AnPreDial + UnPreDial), batch 128 + 128, lr 1e-5 and 60 epochs are not run here.
Config arguments: `supervision` (`soft`, the default: the ten views' Jaccard scores; `hard`: one head, positives
the utterances of the same intent; `none`: SimCSE-style on both batches, the frames unused) and `size`.
"""

import ml_collections

from configs import common
from configs.evaluators import evaluator
from configs.simcse import text_only

VIEWS = ("D", "I", "S", "V", "DI", "IS", "SV", "DIS", "ISV", "DISV")


def get_config(arg: str | None = None):
    arg = common.parse_arg(arg, supervision="soft", size="tiny")
    if arg.supervision not in ("soft", "hard", "none"):
        raise ValueError(
            f"Unknown SPACE-2 supervision {arg.supervision!r}; use supervision=soft, supervision=hard or "
            "supervision=none."
        )
    config = text_only(common.get_base_config(f"size={arg.size}"), "shape_commands")
    config.objective = "space2"
    config.evals = ml_collections.ConfigDict({"dialog": evaluator("dialog", prefix="")})
    config.model.text.update(kind="bert", pool="first", activation="gelu", layer_norm_eps=1e-12, dropout_rate=0.2)
    config.eval.num_examples = 600
    config.space2 = ml_collections.ConfigDict(
        dict(
            views=VIEWS if arg.supervision == "soft" else ("I",),
            supervised=arg.supervision != "none",
            temperature=0.07,
            base_temperature=0.07,
            mlm_weight=0.1,
            mlm_probability=0.15,
            labelled_fraction=0.1,
        )
    )
    return config
