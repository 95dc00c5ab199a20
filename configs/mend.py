"""MEND (Li et al. 2024, METHODS.md §23): a distiller that writes the demonstrations of an in-context task as k
vectors a frozen language model reads in their place (models/mend.py, losses/mend.py).

    python main.py --config=configs/mend.py:stage=icl --workdir=runs/icl      # the language model, first
    python main.py --config=configs/mend.py --workdir=runs/mend --config.mend.lm_workdir=runs/icl
    # ablations of the meta-training loss: the answer's CE alone, and the KL to in-context learning alone
    python main.py --config=configs/mend.py:arm=ce --workdir=runs/mend_ce --config.mend.lm_workdir=runs/icl
    python main.py --config=configs/mend.py:arm=kd --workdir=runs/mend_kd --config.mend.lm_workdir=runs/icl

The METHODS.md toy on the embedded in-context tasks (input_pipeline/icl_tasks.py: a random colour or shape map
per text, shown by 10 demonstrations, then a query): stage `icl` meta-trains configs/lm.py's language model on
the whole texts, so that it learns to answer from the demonstrations; the default stage trains the distiller
(a decoder of the language model's sizes, started as a copy of it as the paper's starts from a pretrained
GPT-2) for that frozen model with CE(y | S_D, x) + KL(in-context || MEND).
The `in_context` evaluator ranks each held-out task's answer among the 8 words of its domain: from the
demonstrations (`full`), from the k vectors (`mend`), from nothing (`zero_shot`), with the tokens the language
model reads for each (evaluation/in_context_eval.py; docs/language.md).
Keys of config.mend: `lm_workdir` (the stage=icl run, whose model and tokenizer are used), `virtual_tokens` k (4),
`ce_weight` and `kd_weight` (1 and 1: the paper's meta-training, λ = 1), `distiller_init` ('lm': a copy of the
language model, its k summary rows copies of random vocabulary rows; 'random'), `distiller` (width, depth, heads,
max_len; the language model's for 'lm').
Config arguments: `stage` (`distill`, the default, or `icl`) and `arm` (`mend`, the default; `ce`: kd_weight 0;
`kd`: ce_weight 0, the paper's stage-1 loss, here on the tasks rather than on generic text).
"""

import ml_collections

from configs import common
from configs.evaluators import evaluator
from configs.lm import language_model
from input_pipeline.icl_tasks import ICL_DATASET

ARMS = {"mend": (1.0, 1.0), "ce": (1.0, 0.0), "kd": (0.0, 1.0)}  # arm -> (ce_weight, kd_weight)


def get_config(arg: str | None = None):
    arg = common.parse_arg(arg, stage="distill", arm="mend")
    if arg.stage not in ("distill", "icl"):
        raise ValueError(f"Unknown MEND stage {arg.stage!r}; use stage=icl (the language model) or stage=distill.")
    if arg.arm not in ARMS:
        raise ValueError(f"Unknown MEND arm {arg.arm!r}; use one of {sorted(ARMS)}.")
    config = language_model(common.get_base_config(None))
    config.data.name = ICL_DATASET
    config.batch_size = 64
    config.total_steps = 5000
    config.eval_every_steps = 1000
    config.checkpoint_every_steps = 1000
    config.eval.num_examples = 1000  # held-out tasks
    config.eval.batch_size = 250
    config.evals = ml_collections.ConfigDict({"in_context": evaluator("in_context", prefix="in_context/")})
    if arg.stage == "icl":
        return config
    ce_weight, kd_weight = ARMS[arg.arm]
    config.objective = "mend"
    config.model.kind = "mend"
    config.mend = ml_collections.ConfigDict(
        dict(
            lm_workdir="", virtual_tokens=4, ce_weight=ce_weight, kd_weight=kd_weight, distiller_init="lm",
            distiller=ml_collections.ConfigDict(dict(width=96, depth=3, heads=4, max_len=48)),
        )
    )  # fmt: skip
    config.optimizer.frozen_prefixes = ("lm",)
    config.total_steps = 2000
    config.eval_every_steps = 500
    config.checkpoint_every_steps = 500
    return config
