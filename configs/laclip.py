"""LaCLIP (Fan et al. 2023): CLIP whose caption is drawn per example per epoch from
[original, rewrite_1..K], falling back to the original when the pick has < 2 words.
The loss is unchanged; only the text augmentation differs from configs/clip.py.

    python main.py --config=configs/laclip.py --workdir=runs/laclip
    python -m launch.local --config=configs/laclip.py --workdir=runs/laclip_sweep  # CLIP vs LaCLIP, 3 seeds
"""

from configs import common


def get_config(arg: str | None = None):
    config = common.get_base_config(arg)
    config.data.text_augmentation = "laclip"
    return config


def get_hyper(hyper):
    """The ablation of the rewrites: without (CLIP) and with them, seeds 0-2 (folded in the summary table)."""
    return hyper.product(
        [
            hyper.sweep("config.data.text_augmentation", ["none", "laclip"]),
            hyper.sweep("config.seed", [0, 1, 2]),
        ]
    )
