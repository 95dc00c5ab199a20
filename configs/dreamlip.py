"""DreamLIP (Zheng et al. 2024): CLIP + a multi-positive loss over sub-captions sampled from the long
caption + the sub-caption-specific grouping loss over patch tokens (losses/dreamlip.py).

    python main.py --config=configs/dreamlip.py --workdir=runs/dreamlip

Keys of config.dreamlip:
- multipos: "infonce" (the paper's multi-positive contrastive loss) or "circle" (the official code's
  circle loss, divided by 10);
- multipos_weight, sgl_weight: weights of the multi-positive and grouping losses (the code's 1 and 1);
- sgl_threshold: min-max-normalised patch similarities below it are zeroed (-1 = 1/patches);
- code_clip_divisor: divide the CLIP loss by the number of sub-captions as the official code does;
- circle_gamma, circle_margin: the circle loss's gamma and margin (32, 0.25).
Three sub-captions per image are sampled afresh each epoch (losses/dreamlip.py NUM_SUBCAPTIONS).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None):
    config = common.get_base_config(arg)
    config.objective = "dreamlip"
    config.dreamlip = ml_collections.ConfigDict(
        dict(
            multipos="infonce",
            multipos_weight=1.0,
            sgl_weight=1.0,
            sgl_threshold=0.0,
            code_clip_divisor=False,
            circle_gamma=32.0,
            circle_margin=0.25,
        )
    )
    return config
