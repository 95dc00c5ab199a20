"""SimCTG (Su et al. 2022, METHODS.md §13): the language model of configs/lm.py trained with next-token
cross-entropy plus the token-level contrastive margin loss over each sequence's hidden states
(losses/language.py), for contrastive search decoding (models/generation.py).

    python main.py --config=configs/simctg.py --workdir=runs/simctg
    python main.py --config=configs/simctg.py --workdir=runs/simctg --mode=generate --prompt="we see a" \
        --config.generation.strategy=contrastive

Keys of config.simctg: `margin` ρ (0.5, the paper's; 0 is plain MLE). The `language` evaluator reports every
decoding strategy; the paper pairs SimCTG with contrastive search (k = config.generation.top_k,
α = config.generation.alpha).
"""

import ml_collections

from configs import common
from configs.lm import language_model


def get_config(arg: str | None = None):
    config = language_model(common.get_base_config(arg))
    config.objective = "simctg"
    config.simctg = ml_collections.ConfigDict(dict(margin=0.5))
    return config
