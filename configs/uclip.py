"""uCLIP (Chung et al., AAAI 2026): two projection heads trained on unpaired data over a frozen CLIP and a
frozen multilingual encoder (losses/uclip.py), so that images are retrieved from captions in a second
synthetic language (input_pipeline/second_language.py) that was never paired with an image.

    python main.py --config=configs/uclip.py --workdir=runs/uclip \
        --config.init_from.workdir=runs/clip   # a run of configs/clip.py
    python benchmarks/second_language_retrieval.py --workdirs=runs/clip,runs/uclip

The CLIP parameters are frozen (config.optimizer.frozen_prefixes); only the heads (config.model.head_dim,
Linear(D, 2D) - batch norm - ReLU - Linear(2D, D) as uCLIP's projector) train, at uCLIP's learning
rate 1e-3. The trainer's shapes evaluation still reports the frozen CLIP; its `second_language` evaluator
(config.evals) the second-language retrieval, as benchmarks/second_language_retrieval.py for many runs.

Method keys (config.uclip):
    bank_size              unpaired CLIP image embeddings, and unpaired second-language sentence
                           embeddings, in the memory banks (1024 each).
    retrieval_temperature  tau_r of the soft retrieval from the banks (0.01).
    temperature            tau of the two InfoNCE losses (0.01).
    noise_std              std of the Gaussian noise on every embedding before the heads (sqrt(0.004)).
    intra_weight           weight of the intra-modal distance loss (0.1).
    mismatch               how far apart the multilingual encoder puts a word and its translation (0.5).
"""

import math

import ml_collections

from configs import clip_continued, common
from configs.evaluators import evaluator


def get_config(arg: str | None = None):
    config = clip_continued.post_pretraining(common.get_base_config(arg))
    config.objective = "uclip"
    config.model.head_dim = config.model.embed_dim
    config.model.head_hidden_dim = 2 * config.model.embed_dim
    config.optimizer.frozen_prefixes = clip_continued.MODEL_PARAMS
    config.optimizer.learning_rate = 1e-3
    config.evals.second_language = evaluator("second_language_retrieval")
    config.uclip = ml_collections.ConfigDict(
        dict(
            bank_size=1024,
            retrieval_temperature=0.01,
            temperature=0.01,
            noise_std=math.sqrt(0.004),
            intra_weight=0.1,
            mismatch=0.5,
        )
    )
    return config
