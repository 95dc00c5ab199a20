"""ProCLIP stage 2 (losses/proclip.py): contrastive tuning of the image tower against the MLP-mapped frozen
embedder, with self-distillation to a frozen copy of the starting image tower. Starts from a stage 1
run (configs/proclip_stage1.py), which holds the CLIP parameters and the distilled MLP.

    python main.py --config=configs/proclip.py --workdir=runs/proclip \
        --config.init_from.workdir=runs/proclip_stage1 --config.proclip.embedder_workdir=runs/clip_embedder

Method keys: see configs/proclip_stage1.py (stage is 2 here).
"""

from configs import clip_continued, common
from configs.proclip_stage1 import proclip


def get_config(arg: str | None = None):
    config = proclip(common.get_base_config(arg), stage=2)
    config.init_from.param_prefixes = (*clip_continued.MODEL_PARAMS, "text_head")
    # The CLIP text path is not used (ProCLIP's text is MLP(G(T))); the image head is ProtoCLIP's, unused.
    config.optimizer.frozen_prefixes = ("text_tower", "text_projection", "image_head", "logit_scale_proto")
    return config
