"""LiMBeR (Merullo et al. 2023, METHODS.md §18): a frozen CLIP image tower and a frozen language model joined by
one trained linear map from the image embedding to `prefix_tokens` soft tokens before the caption.

    python main.py --config=configs/clip.py --workdir=runs/clip
    python main.py --config=configs/lm.py --workdir=runs/lm
    python main.py --config=configs/limber.py --workdir=runs/limber --config.init_from.workdir=runs/clip \
        --config.limber.lm_workdir=runs/lm

Keys of config.limber: `lm_workdir` (the configs/lm.py run whose model and tokenizer caption), `prefix_tokens` k
(4: one pooled embedding per image, as the paper's NF-ResNet variant maps), `dropout` on the prefix (the
paper's 0.1). config.init_from.workdir names the frozen CLIP run (config.model.embed_dim must be its width).
Trained: the map only (config.optimizer.frozen_prefixes = ("lm",)); the `captioning` evaluator captions held-out
shapes images (evaluation/captioning_eval.py; docs/language.md).
"""

import ml_collections

from configs import common
from configs.lm import captioner


def get_config(arg: str | None = None):
    config = captioner(common.get_base_config(arg), "limber")
    config.limber = ml_collections.ConfigDict(dict(lm_workdir="", prefix_tokens=4, dropout=0.1))
    config.optimizer.frozen_prefixes = ("lm",)
    return config
