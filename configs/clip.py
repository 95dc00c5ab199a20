"""CLIP (Radford et al. 2021): symmetric InfoNCE on (image, original caption) pairs.

python main.py --config=configs/clip.py --workdir=runs/clip
python main.py --config=configs/clip.py:size=B/16 --workdir=...   # full size
python -m launch.local --config=configs/clip.py --workdir=runs/clip_sweep   # the get_hyper sweep below
python main.py --config=configs/clip.py:pretrained=/path/to/clip_folder --workdir=...  # fine-tune a checkpoint

Arguments (besides common.py's size and data): `pretrained`, a checkpoint (Hugging Face CLIPModel or
SiglipModel folder, OpenAI / open_clip file) whose every tower and the logit scale start the run, with
the model sizes and switches read from it (common.use_pretrained).
"""

from configs import common


def get_config(arg: str | None = None):
    arg = common.parse_arg(arg, size="tiny", data="shapes", pretrained="")
    config = common.get_base_config(f"size={arg.size},data={arg.data}")
    return common.use_pretrained(config, arg.pretrained) if arg.pretrained else config


def get_hyper(hyper):
    """Peak learning rate x batch size, 6 runs (at a fixed step count, so batch 64 sees half the examples)."""
    return hyper.product(
        [
            hyper.sweep("config.optimizer.learning_rate", [1e-3, 2e-3, 4e-3]),
            hyper.sweep("config.batch_size", [64, 128]),
        ]
    )
