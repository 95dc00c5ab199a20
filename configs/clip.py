"""CLIP (Radford et al. 2021): symmetric InfoNCE on (image, original caption) pairs.

python main.py --config=configs/clip.py --workdir=runs/clip
python main.py --config=configs/clip.py:size=B/16 --workdir=...   # full size
python -m launch.local --config=configs/clip.py --workdir=runs/clip_sweep   # the get_hyper sweep below
"""

from configs import common


def get_config(arg: str | None = None):
    return common.get_base_config(arg)


def get_hyper(hyper):
    """Peak learning rate x batch size, 6 runs (at a fixed step count, so batch 64 sees half the examples)."""
    return hyper.product(
        [
            hyper.sweep("config.optimizer.learning_rate", [1e-3, 2e-3, 4e-3]),
            hyper.sweep("config.batch_size", [64, 128]),
        ]
    )
