"""PHF — pretraining language models with human preferences (Korbak et al., ICML 2023; METHODS.md §25): a language
model trained from scratch on text scored sentence by sentence, by one of the paper's objectives (losses/phf.py).

    python main.py --config=configs/phf.py --workdir=runs/phf                          # conditional training
    python main.py --config=configs/phf.py:objective=mle --workdir=runs/mle            # the baseline
    python main.py --config=configs/phf.py:objective=filtering --workdir=runs/filter   # drop misaligned documents
    python main.py --config=configs/phf.py:objective=unlikelihood --workdir=runs/ul
    python main.py --config=configs/phf.py --workdir=runs/phf --mode=generate --prompt="<|aligned|> there is a"

Trains configs/lm.py's decoder (3 blocks of width 96) on the embedded `preference_text` corpus
(input_pipeline/preference_text.py): shapes prose in which 5% of sentences say MISALIGNED_WORD ("magenta"), the
paper's toxic sentences in miniature, scored exactly by the rule. Evaluated by the `preference` evaluator
(evaluation/preference_eval.py): the word's rate in samples and after prompts that lead to it, and the loss on
held-out aligned and misaligned text. Keys of config.phf: `objective`, `misaligned_rate` (0.05, of the embedded
corpus), `threshold` (t: a sentence of your scored documents is misaligned when its score exceeds it; 0.5), and
`unlikelihood_weight` (α, the paper's 1). Your scored text (input_pipeline/preference_files.py):
`--config.data.name=scored_documents --config.data.path=train.jsonl --config.evals.preference.path=valid.jsonl`.
Not built: reward-weighted regression (RWR) and advantage-weighted regression (AWR), the paper's two weakest
objectives; the paper's scorers (Detoxify, scrubadub, pycodestyle) and GPT-2-small on 3.3B tokens.
Config argument: `objective` (`conditional`, the default; `mle`, `filtering` or `unlikelihood`).
"""

import ml_collections

from configs import common
from configs.evaluators import evaluator
from configs.lm import language_model

OBJECTIVES = ("mle", "filtering", "conditional", "unlikelihood")  # losses/phf.py; configs import no losses


def get_config(arg: str | None = None):
    arg = common.parse_arg(arg, objective="conditional")
    if arg.objective not in OBJECTIVES:
        raise ValueError(f"Unknown PHF objective {arg.objective!r}; use objective= one of {list(OBJECTIVES)}.")
    config = language_model(common.get_base_config(None))
    config.objective = "phf"
    config.data.name = "preference_text"
    config.model.decoder.max_len = 64  # two sentences with their control tokens
    config.total_steps = 1500
    config.eval_every_steps = 1500
    config.eval.num_examples = 500  # samples, adversarial prompts and held-out documents each
    config.evals = ml_collections.ConfigDict({"preference": evaluator("preference", prefix="")})
    config.phf = ml_collections.ConfigDict(
        dict(objective=arg.objective, misaligned_rate=0.05, threshold=0.5, unlikelihood_weight=1.0)
    )
    return config
