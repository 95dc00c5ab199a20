"""ALIP (Yang et al. 2023): one text tower on the noisy raw caption and the clean (synthetic) caption,
weighted per example by the language- and description-consistency gates (losses/alip.py).

    python main.py --config=configs/alip.py --workdir=runs/alip

Keys of config.alip:
- momentum: of the EMAs of the three batch-mean similarities (0.99);
- gate_power: lambda in the gates exp(lambda (S - mean)) (2, the paper's squared exponential);
- clip_pair_weights: clip the description-consistency weights at 1 (the official code does not);
- raw_caption_weight: the raw-caption term's weight (1, the paper; 0 trains on the synthetic caption alone,
  still gated by the raw text: the ablation of docs/results.md).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None):
    config = common.get_base_config(arg)
    config.objective = "alip"
    config.alip = ml_collections.ConfigDict(
        dict(momentum=0.99, gate_power=2.0, clip_pair_weights=False, raw_caption_weight=1.0)
    )
    return config
