"""SigLIP (Zhai et al. 2023): pairwise sigmoid loss, learnable temperature (init 10) and bias (init -10).

python main.py --config=configs/siglip.py --workdir=runs/siglip
python main.py --config=configs/siglip.py:pretrained=/path/to/siglip_folder --workdir=...  # from a SiglipModel

Arguments (besides common.py's size and data): `pretrained`, a checkpoint (Hugging Face SiglipModel or
CLIPModel folder, OpenAI / open_clip file) whose every tower and the logit scale and bias start the run,
with the model sizes and switches read from it (common.use_pretrained).
python main.py --config=configs/siglip.py --config.loss.implementation=ring_tiled --workdir=...  # big batches
"""

import math

from configs import common


def get_config(arg: str | None = None):
    arg = common.parse_arg(arg, size="tiny", data="shapes", pretrained="")
    config = common.get_base_config(f"size={arg.size},data={arg.data}")
    config.objective = "siglip"
    config.model.logit_scale_init = math.log(10.0)
    config.model.logit_bias_init = -10.0
    return common.use_pretrained(config, arg.pretrained) if arg.pretrained else config
