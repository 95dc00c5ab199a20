"""SuperEdit (Li et al., ICCV 2025; METHODS.md §28): instruction-based image editing trained with InstructPix2Pix's
noise-prediction loss plus a triplet margin that makes the right instruction predict the noise better than a wrong
one (losses/superedit.py), on the embedded before-after shapes pairs (input_pipeline/shape_edits.py) with a
conditional denoiser on pixels (models/denoiser.py).

    python main.py --config=configs/superedit.py --workdir=runs/superedit
    python main.py --config=configs/superedit.py:arm=ip2p --workdir=runs/ip2p      # no triplet: InstructPix2Pix
    # the unrectified instructions: 20% of the training pairs carry a wrong one
    python main.py --config=configs/superedit.py --workdir=runs/se_wrong --config.superedit.wrong_instruction_rate=0.2

Keys of config.superedit: `triplet_weight` w (1.0; 0 is InstructPix2Pix), `triplet_start` (the step from which
the triplet term counts: the paper's 2000 of 6000, a third of the run), `margin` m (5e-4, the paper's script),
`stop_positive` (stop the gradient through the right instruction's error in the triplet term), `conditioning_dropout`
(InstructPix2Pix's p = 0.05 for each of: instruction, both, source dropped), `wrong_instruction_rate` (the share of
training pairs whose instruction is a wrong one: the data before SuperEdit's rectification), `width` (the
denoiser's channels). The text tower of config.model.text reads the instructions.
The `edits` evaluator samples each held-out pair's edit by DDIM from noise and scores it by the pixels the edit
should change (evaluation/edit_eval.py; docs/editing.md).
Config arguments: `arm` (`superedit`, the default, or `ip2p`: triplet_weight 0).
"""

import ml_collections

from configs import common
from configs.evaluators import evaluator

ARMS = {"superedit": 1.0, "ip2p": 0.0}  # arm -> triplet_weight


def get_config(arg: str | None = None):
    arg = common.parse_arg(arg, arm="superedit")
    if arg.arm not in ARMS:
        raise ValueError(f"Unknown SuperEdit arm {arg.arm!r}; use one of {sorted(ARMS)}.")
    config = common.get_base_config(None)
    config.objective = "superedit"
    config.model.kind = "denoiser"
    config.superedit = ml_collections.ConfigDict(
        dict(
            triplet_weight=ARMS[arg.arm], triplet_start=1000, margin=5e-4, stop_positive=False,
            conditioning_dropout=0.05, wrong_instruction_rate=0.0, width=32,
        )
    )  # fmt: skip
    config.data.name = "shape_edits"
    config.data.image_size = 16  # METHODS.md's 16 x 16: one large object spans ~5 pixels
    config.data.crop_scale = (1.0, 1.0)  # the pair stays aligned: no crop
    config.model.text.update(width=64, depth=2, heads=2, max_len=16)
    config.batch_size = 64
    config.total_steps = 3000
    config.optimizer.learning_rate = 1e-3
    config.optimizer.weight_decay = 0.0
    config.eval_every_steps = 1000
    config.checkpoint_every_steps = 1000
    config.eval.num_examples = 600  # held-out pairs, 200 of each edit on average
    config.eval.batch_size = 200
    config.evals = ml_collections.ConfigDict({"edits": evaluator("edits", prefix="edits/")})
    return config
