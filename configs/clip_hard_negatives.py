"""CLIP + UniME-style hard-negative mining with false-negative filtering (losses/hard_negatives.py).

    # UniME's stage 2 as it is meant: a short fine-tune (150 steps) of a trained CLIP run
    python main.py --config=configs/clip_hard_negatives.py:post=true --workdir=runs/clip_hn \
        --config.init_from.workdir=runs/clip
    # from scratch (collapses on the embedded data at these settings, docs/results.md "Seed methods I")
    python main.py --config=configs/clip_hard_negatives.py --workdir=runs/clip_hn_scratch
    # MultiCSR-style masking of in-batch captions that a frozen trained text tower finds equivalent:
    python main.py --config=configs/clip_hard_negatives.py:frozen=true --workdir=runs/clip_hn_frozen \
        --config.init_from.workdir=runs/clip

Candidates per image: the batch's captions and the image's six rule-based hard-negative captions.
Keys of config.clip_hard_negatives:
- top_k: hard negatives kept per image after filtering (UniME: 8; 0 = keep all remaining);
- margin: drop candidates scoring above the positive + margin (UniME beta: 0.1);
- temperature: of the hard-negative CE (UniME: 0.02; 0 = the model's learnable temperature);
- weight, clip_weight: L = clip_weight L_CLIP + weight L_hard (clip_weight 0 = UniME's loss alone);
- caption_negatives: add the rule-based hard-negative captions to the candidates;
- frozen_threshold: mask in-batch captions whose cosine to the true caption under the frozen text
  tower (a copy of the init_from run's) exceeds it (MultiCSR phi: 0.95; 0 = off);
- mask_mode: with top_k 0, masked logits are "exclude"d from the softmax or set to "zero" (MultiCSR code).
Config arguments: `size` and `data` as in configs/common.py; `frozen` turns the frozen masking on
(phi 0.95) and copies the text tower too; `post` makes it a post-pretraining run
(configs/clip_continued.post_pretraining: every parameter from config.init_from.workdir, 150 steps).

From scratch, the hard-negative term at temperature 0.02 drives both towers to one constant embedding
within ~100 steps (loss log 128 + log 9: both terms at chance), seeds 0 and 1 alike: the six
perturbed captions differ from the true one by a word that an untrained text tower cannot tell
apart, so collapsing all captions is the cheapest way to bound a loss at scale 50. UniME applies it
to an already trained model, which is what `post=true` does.
"""

import ml_collections

from configs import clip_continued, common


def get_config(arg: str | None = None):
    arg = common.parse_arg(arg, size="tiny", data="shapes", frozen=False, post=False)
    config = common.get_base_config(f"size={arg.size},data={arg.data}")
    config.objective = "clip_hard_negatives"
    config.clip_hard_negatives = ml_collections.ConfigDict(
        dict(
            top_k=8,
            margin=0.1,
            temperature=0.02,
            weight=1.0,
            clip_weight=1.0,
            caption_negatives=True,
            frozen_threshold=0.95 if arg.frozen else 0.0,
            mask_mode="exclude",
        )
    )
    if arg.frozen:
        config.init_from.param_prefixes = ("image_tower", "image_projection", "text_tower", "text_projection")
    if arg.post:
        clip_continued.post_pretraining(config)
    return config
