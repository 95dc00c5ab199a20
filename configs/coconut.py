"""COCONUT — class-incremental learning with rehearsal and contrastive terms (Cappellazzo et al.; METHODS.md §21), in
miniature: the embedded shapes images stand for the spoken commands, their captions for the transcripts and their
shape for the intent. The 8 shapes arrive in 4 experiences of 2 (input_pipeline/class_incremental.py); each
experience is a run started from the one before, which is also its frozen teacher (losses/coconut.py).

    python main.py --config=configs/coconut.py --workdir=runs/coconut0                   # experience 0
    python main.py --config=configs/coconut.py:task=1 --workdir=runs/coconut1 \\
        --config.init_from.workdir=runs/coconut0                                        # experience 1, and so on

`python benchmarks/coconut_chain.py` runs the three arms of the paper's ablation (experience replay alone, with
NSPT, with NSPT and MM) over every experience at paired seeds and reports the average incremental accuracy and the
forgetting. Every run is evaluated by the `class_incremental` evaluator (evaluation/incremental_eval.py).
Config arguments: `task` (the experience, 0-based), `arm` (`er`, `nspt` or `nspt_mm`, the default) and `size`.

Keys of config.coconut:
- task, tasks: this run's experience and their number (the label's 8 classes split evenly);
- label: 'shape' (the default) or 'colour', the class of each image;
- buffer_per_class: rehearsal samples kept per earlier class; replay_fraction: the buffer's share of an epoch's
  examples (repeated to reach it; 0 joins it once);
- nspt_weight, mm_weight: lambda_1 and lambda_2 of L = CE + lambda_1 L_NSPT + lambda_2 L_MM (the paper's values were
  not retrieved; 1 each); temperature: tau of both contrastive terms.
"""

import ml_collections

from configs import common
from configs.evaluators import evaluator
from input_pipeline.class_incremental import LABELS

ARMS = {"er": (0.0, 0.0), "nspt": (1.0, 0.0), "nspt_mm": (1.0, 1.0)}  # arm -> (nspt_weight, mm_weight)
# Every parameter of the two-tower model: an experience continues the whole model of the one before.
MODEL_PARAMS = (
    "image_tower", "text_tower", "image_projection", "text_projection", "logit_scale", "logit_bias", "class_head",
)  # fmt: skip


def get_config(arg: str | None = None):
    arg = common.parse_arg(arg, task=0, arm="nspt_mm", size="tiny")
    if arg.arm not in ARMS:
        raise ValueError(f"Unknown COCONUT arm {arg.arm!r}; use arm= one of {list(ARMS)}.")
    config = common.get_base_config(f"size={arg.size}")
    config.objective = "coconut"
    nspt_weight, mm_weight = ARMS[arg.arm]
    config.coconut = ml_collections.ConfigDict(
        dict(task=int(arg.task), tasks=4, label="shape", buffer_per_class=20, replay_fraction=0.25,
             nspt_weight=nspt_weight, mm_weight=mm_weight, temperature=0.1)
    )  # fmt: skip
    config.model.image_classes = len(LABELS["shape"])  # the classifier; classes not yet seen are masked out
    config.init_from.param_prefixes = MODEL_PARAMS
    config.evals = ml_collections.ConfigDict({"class_incremental": evaluator("class_incremental", prefix="")})
    config.eval.num_examples = 1000  # held-out test images, ~125 per class
    if config.model.image.width == common.IMAGE_SIZES["tiny"]["width"]:
        # About 3,700 one-object images per experience (of 30,000, half of one object): 300 steps of 64 are ~5
        # passes over them.
        config.data.train_size = 30_000
        config.batch_size = 64
        config.total_steps = 300
        config.optimizer.warmup_steps = 20
        config.eval_every_steps = config.checkpoint_every_steps = 300
    return config
