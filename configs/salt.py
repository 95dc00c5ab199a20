"""SALT (Rawat et al. 2024, METHODS.md §24): a language model distils from a small language model for its first
steps, then trains on the data alone (losses/salt.py).

    python main.py --config=configs/salt.py:stage=teacher --workdir=runs/slm      # the small model, first
    python main.py --config=configs/salt.py --workdir=runs/salt --config.salt.teacher_workdir=runs/slm
    # baselines on the same sizes: plain likelihood (weight 0), and distillation throughout (kd_steps 1,500)
    python main.py --config=configs/salt.py:kd=none --workdir=runs/mle --config.salt.teacher_workdir=runs/slm
    python main.py --config=configs/salt.py:kd=all --workdir=runs/kd_all --config.salt.teacher_workdir=runs/slm

The METHODS.md toy: a small model of 1 block of width 64, the trained model 4 blocks of width 128, both on the
embedded lm_text corpus (configs/lm.py's data, context 48) with the small model's tokenizer; held-out perplexity
every 150 steps (the `language` evaluator without decoding). Keys of config.salt: `teacher_workdir` (the small
model's run), `weight` w (0.5) of the distillation term while it lasts, `kd_steps` (300: the first 20% of 1,500
steps) and `teacher` (the small model's width, depth, heads, max_len, mlp_dim, which must be that run's).
The paper's w and the length of its distillation phase are not verified (METHODS.md §24).
Config arguments: `stage` (`student`, the default, or `teacher`: configs/lm.py's model at the small sizes) and
`kd` (`early`, the default: SALT; `none`: weight 0, maximum likelihood; `all`: kd_steps = total_steps).
"""

import ml_collections

from configs import common
from configs.evaluators import evaluator
from configs.lm import language_model

TEACHER = dict(width=64, depth=1, heads=4, max_len=48, mlp_dim=0)
STUDENT = dict(width=128, depth=4, heads=4, max_len=48, mlp_dim=0)


def get_config(arg: str | None = None):
    arg = common.parse_arg(arg, stage="student", kd="early")
    if arg.stage not in ("student", "teacher"):
        raise ValueError(f"Unknown SALT stage {arg.stage!r}; use stage=student or stage=teacher.")
    if arg.kd not in ("early", "none", "all"):
        raise ValueError(f"Unknown SALT kd {arg.kd!r}; use kd=early (SALT), kd=none (no distillation) or kd=all.")
    config = language_model(common.get_base_config(None))
    config.eval_every_steps = 150
    # Held-out perplexity alone: the curve SALT is judged by (decoding is not its claim).
    config.evals = ml_collections.ConfigDict({"language": evaluator("language", prefix="", strategies=())})
    if arg.stage == "teacher":
        config.model.decoder.update(TEACHER)
        return config
    config.model.decoder.update(STUDENT)
    config.objective = "salt"
    config.salt = ml_collections.ConfigDict(
        dict(teacher_workdir="", weight=0.5, kd_steps=300, teacher=ml_collections.ConfigDict(TEACHER))
    )
    if arg.kd == "none":
        config.salt.weight = 0.0
    elif arg.kd == "all":
        config.salt.kd_steps = config.get_ref("total_steps")  # follows --config.total_steps
    return config
