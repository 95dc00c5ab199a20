"""CLIP-Refine (Yamaguchi et al., CVPR 2025): post-pre-training a CLIP checkpoint with RaFA + HyCD
against a frozen copy of itself (losses/clip_refine.py), to narrow the modality gap.

    python main.py --config=configs/clip_refine.py --workdir=runs/clip_refine \
        --config.init_from.workdir=runs/clip   # a run of configs/clip.py

Method keys (config.clip_refine):
    features            "raw": RaFA and the distillation logits on the un-normalised projected features
                        (the official code); "normalized": on the L2-normalised embeddings, logits scaled
                        by each model's logit scale (the paper's notation). See losses/clip_refine.py.
    alpha               weight of the ground truth in HyCD's blended soft labels (0.5).
    temperature         HyCD's distillation temperature T (1.0).
    rafa_weight         λ_rand (1.0).
    hycd_weight         λ_kd (1.0).
    contrastive_weight  λ_cont of the plain CLIP loss (0.0: the soft labels replace it).
The trainer's eval reports the modality gap, alignment and uniformity as geometry/*.
"""

import ml_collections

from configs import clip_continued, common


def get_config(arg: str | None = None):
    config = clip_continued.post_pretraining(common.get_base_config(arg))
    config.objective = "clip_refine"
    config.clip_refine = ml_collections.ConfigDict(
        dict(features="raw", alpha=0.5, temperature=1.0, rafa_weight=1.0, hycd_weight=1.0, contrastive_weight=0.0)
    )
    return config
