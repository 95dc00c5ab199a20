"""ProCLIP stage 1 (losses/proclip.py): distil a frozen text embedder, through a trainable MLP, into the
text space of a CLIP checkpoint; every CLIP parameter stays frozen.

    python main.py --config=configs/proclip_stage1.py --workdir=runs/proclip_stage1 \
        --config.init_from.workdir=runs/clip \
        --config.proclip.embedder_workdir=runs/clip_embedder   # another run of configs/clip.py
    python main.py --config=configs/proclip.py --workdir=runs/proclip \
        --config.init_from.workdir=runs/proclip_stage1 --config.proclip.embedder_workdir=runs/clip_embedder

Method keys (config.proclip):
    stage             1 here: instance (MSE-sum) + structure (SmoothL1 of pdist) losses, MLP only.
    embedder_workdir  a run whose text tower is the frozen embedder G ('' = a random initialisation,
                      seed embedder_seed). Stage 2 must use the same one.
    embedder_seed     the random embedder's seed (0).
    distill_weight    stage 2's lambda_d (1.0).
The trainer's evaluation still scores the CLIP text tower (unchanged here); ProCLIP's own text path is
scored by evaluation/proclip.py.
"""

import ml_collections

from configs import clip_continued, common
from configs.evaluators import evaluator


def proclip(config, stage: int):
    """ProCLIP's shared settings: the MLP is the model's text_head (D -> 2D -> D); `stage` 1 or 2."""
    config = clip_continued.post_pretraining(config)
    config.objective = "proclip"
    config.model.head_dim = config.model.embed_dim
    config.model.head_hidden_dim = 2 * config.model.embed_dim
    config.proclip = ml_collections.ConfigDict(
        dict(stage=stage, embedder_workdir="", embedder_seed=0, distill_weight=1.0)
    )
    # Retrieval through ProCLIP's text path next to the text tower's (evaluation/proclip.py).
    config.evals.proclip_text = evaluator("proclip_text")
    return config


def get_config(arg: str | None = None):
    config = proclip(common.get_base_config(arg), stage=1)
    # Only the MLP trains; the image head and its temperature exist (head_dim > 0) but are unused.
    config.optimizer.frozen_prefixes = (*clip_continued.MODEL_PARAMS, "image_head", "logit_scale_proto")
    config.optimizer.learning_rate = 1e-3
    return config
