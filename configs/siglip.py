"""SigLIP (Zhai et al. 2023): pairwise sigmoid loss, learnable temperature (init 10) and bias (init -10).

python main.py --config=configs/siglip.py --workdir=runs/siglip
python main.py --config=configs/siglip.py --config.loss.implementation=ring_tiled --workdir=...  # big batches
"""

import math

from configs import common


def get_config(arg: str | None = None):
    config = common.get_base_config(arg)
    config.objective = "siglip"
    config.model.logit_scale_init = math.log(10.0)
    config.model.logit_bias_init = -10.0
    return config
