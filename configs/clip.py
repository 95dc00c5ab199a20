"""CLIP (Radford et al. 2021): symmetric InfoNCE on (image, original caption) pairs.

python main.py --config=configs/clip.py --workdir=runs/clip
python main.py --config=configs/clip.py:size=B/16 --workdir=...   # full size
"""

from configs import common


def get_config(arg: str | None = None):
    return common.get_base_config(arg)
