"""LaCLIP (Fan et al. 2023): CLIP whose caption is drawn per example per epoch from
[original, rewrite_1..K], falling back to the original when the pick has < 2 words.
The loss is unchanged; only the text augmentation differs from configs/clip.py.

The tiny (quick-start) runs warm the rewrites up over their first 400 steps: the chance of drawing a
rewrite rises linearly from 0 to the paper's K/(K+1). Without it, on some seeds both towers settle in a
colour-only solution before the text tower agrees on the rewrites' shape synonyms, and never learn
shape in the 1,100-step budget (seed 1: zero-shot shape 13%, chance 12.5%; docs/results.md). Full-size
runs draw as the paper does from the first step; `--config.data.rewrite_warmup_steps=0` does so here.

    python main.py --config=configs/laclip.py --workdir=runs/laclip
    python -m launch.local --config=configs/laclip.py --workdir=runs/laclip_sweep  # the ablation below
"""

from configs import common

TINY_REWRITE_WARMUP_STEPS = 400


def get_config(arg: str | None = None):
    config = common.get_base_config(arg)
    config.data.text_augmentation = "laclip"
    if common.parse_arg(arg, size="tiny", data="shapes").size == "tiny":
        config.data.rewrite_warmup_steps = TINY_REWRITE_WARMUP_STEPS
    return config


def get_hyper(hyper):
    """The ablation of the rewrites: without (CLIP), with them as the paper draws them, and warmed up; seeds 0-2."""
    return hyper.product(
        [
            hyper.zipit(
                [
                    hyper.sweep("config.data.text_augmentation", ["none", "laclip", "laclip"]),
                    hyper.sweep("config.data.rewrite_warmup_steps", [0, 0, TINY_REWRITE_WARMUP_STEPS]),
                ]
            ),
            hyper.sweep("config.seed", [0, 1, 2]),
        ]
    )
