"""CLOSE (Gu et al. 2023, METHODS.md §19): a captioner trained on text only. The frozen CLIP run's embedding of
each caption, with Gaussian noise of std σ added and renormalised, is mapped to `prefix_tokens` soft tokens
before the caption, and the language model is trained with the map; at test time the image's embedding, without
noise, takes the caption's place: noise is what lets the text-trained captioner cross CLIP's modality gap.

    python main.py --config=configs/close.py --workdir=runs/close --config.init_from.workdir=runs/clip \
        --config.close.lm_workdir=runs/lm
    python main.py --config=configs/close.py:sigma=0 --workdir=runs/close_0 --config.init_from.workdir=runs/clip \
        --config.close.lm_workdir=runs/lm

Keys of config.close: `lm_workdir` (the configs/lm.py run it starts from), `prefix_tokens` (4, the paper's), and
`noise_std` σ (0.12, the paper's single-caption default; docs/language.md sweeps it). config.init_from.workdir
names the frozen CLIP run. The `captioning` evaluator captions held-out images from their image embeddings and,
beside, the held-out captions from their text embeddings (evaluation/captioning_eval.py).
"""

import ml_collections

from configs import common
from configs.lm import captioner


def get_config(arg: str | None = None):
    """Arguments: sigma (the noise std, 0.12), size, data (common.get_base_config's)."""
    arg = common.parse_arg(arg, sigma=0.12, size="tiny", data="shapes")
    config = captioner(common.get_base_config(f"size={arg.size},data={arg.data}"), "close")
    config.close = ml_collections.ConfigDict(dict(lm_workdir="", prefix_tokens=4, noise_std=arg.sigma))
    config.optimizer.learning_rate = 5e-4  # the language model is trained too: a gentler step than the map alone
    return config
