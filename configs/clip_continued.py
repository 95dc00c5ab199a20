"""Plain CLIP continued from a CLIP checkpoint: the fair-budget baseline of the post-pretraining methods.

A post-pretraining method (configs/clip_refine.py, configs/degla.py, configs/proclip.py,
configs/uclip.py) starts from every parameter of a run trained by configs/clip.py and trains for a
short extra budget; this config spends the same budget on the plain CLIP loss, so that a method's
effect is told apart from that of more training.

    python main.py --config=configs/clip.py --workdir=runs/clip
    python main.py --config=configs/clip_continued.py --workdir=runs/clip_continued \
        --config.init_from.workdir=runs/clip
"""

from configs import common

# Every parameter of the two-tower model (its top-level names).
MODEL_PARAMS = ("image_tower", "text_tower", "image_projection", "text_projection", "logit_scale", "logit_bias")


def post_pretraining(config):
    """What the post-pretraining configs share: every model parameter from config.init_from.workdir (set it
    on the command line), a short budget with a short warmup and a lower peak learning rate."""
    config.init_from.param_prefixes = MODEL_PARAMS
    config.total_steps = 150
    config.optimizer.warmup_steps = 10
    config.optimizer.learning_rate = 2e-4
    config.eval_every_steps = config.total_steps
    config.checkpoint_every_steps = config.total_steps
    return config


def get_config(arg: str | None = None):
    return post_pretraining(common.get_base_config(arg))
