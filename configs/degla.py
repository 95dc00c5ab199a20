"""DeGLA (Hu, Yang et al., ACM MM 2025): post-training a CLIP checkpoint on hard-negative captions with
an EMA teacher (losses/degla.py), to raise compositional understanding without forgetting.

    python main.py --config=configs/degla.py --workdir=runs/degla \
        --config.init_from.workdir=runs/clip   # a run of configs/clip.py

The hard negatives are the shapes data's rule-based perturbations (record["hard_negatives"]); the
evaluation's compositional/* scores use the same generator on the test split, so a gain there is
in-distribution (the paper trains on LLM-written negatives and tests on other benchmarks).

Method keys (config.degla):
    num_negatives        K hard-negative captions per example, drawn per step (4, as the paper).
    ema_momentum         teacher <- m teacher + (1 - m) student after every step (0.9996).
    igc_weight           image-grounded contrast (0.1).
    tgc_weight           text-grounded contrast (0.1).
    tgc_scale            TGC's fixed logit scale (10, tau = 0.1).
    distillation_weight  summed squared distance to the teacher's embeddings (0.005).
    tgc_negatives        "own" (the paper) or "official_code" (the code's block-layout mask).
"""

import ml_collections

from configs import clip_continued, common


def get_config(arg: str | None = None):
    config = clip_continued.post_pretraining(common.get_base_config(arg))
    config.objective = "degla"
    config.degla = ml_collections.ConfigDict(
        dict(
            num_negatives=4,
            ema_momentum=0.9996,
            igc_weight=0.1,
            tgc_weight=0.1,
            tgc_scale=10.0,
            distillation_weight=0.005,
            tgc_negatives="own",
        )
    )
    return config
