"""DenseCLIP (Rao et al. 2022): semantic segmentation from a trained CLIP, guided by pixel-text score maps
(losses/denseclip.py, models/dense_heads.py).

    python main.py --config=configs/clip.py --workdir=runs/clip
    python main.py --config=configs/denseclip.py --workdir=runs/denseclip --config.init_from.workdir=runs/clip

Every CLIP parameter comes from the CLIP run and stays frozen (the paper fine-tunes the image tower at a tenth of
the learning rate; with a few hundred masks we keep it fixed); the prompt context, the context decoder and the
segmentation head train on the masks of the first data.train_size (200) shapes training images, for 300 steps.
Without init_from.workdir the same recipe runs on a randomly initialised CLIP: the control, whose towers know
nothing. The `segmentation` evaluator (evaluation/segmentation_eval.py) reports mIoU on held-out layouts beside the
plain CLIP patch-token baseline and chance.

On your images, with a PNG mask beside each (input_pipeline/masks.py, docs/data.md), name their classes and a
held-out split (captions are optional at clip_weight 0; every usable example trains, data.train_size is the shapes
data's):

    python main.py --config=configs/denseclip.py:data=webdataset --workdir=runs/denseclip_mine \\
        --config.init_from.workdir=runs/clip --config.data.path='/data/seg/train-*.tar' \\
        --config.denseclip.class_names="('background','cat','dog')" \\
        --config.evals.segmentation.path='/data/seg/val-*.tar'

Keys of config.denseclip:
- class_names: the segmentation classes; on the shapes data one of input_pipeline/segmentation.py CLASS_SETS, on
  your files name i for mask value i;
- context_tokens: learnable prompt vectors shared by the classes (8, the paper);
- prompting: `post` (the context decoder updates the text embeddings, gamma init 1e-4: the paper's and the
  official code's), `pre` (it makes the prompt context from the image: the paper's alternative), `none`;
- decoder_depth, decoder_width, decoder_heads: the context decoder (paper: 3, 256, 4; here 1, 64, 4);
- head_width: the FPN segmentation head's width; score_concat: the score map joins the features it reads;
- aux_weight, temperature: the auxiliary pixel-text loss CE(upsample(S / temperature), y) (0.4, 0.07);
- clip_weight: the image-caption InfoNCE alongside (0: the paper fine-tunes, it does not pretrain).

Config arguments: `size` and `data` as in configs/common.py; `variant` picks the ablation of METHODS.md 16:
`features` (the head on the dense features alone), `score` (+ the score map concatenated, learned prompts),
`aux` (+ the auxiliary loss), `full` (+ the post-model context decoder: DenseCLIP), `pre` (pre-model prompting).
"""

import ml_collections

from configs import clip_continued, common
from configs.evaluators import evaluator
from input_pipeline.segmentation import CLASS_SETS

# variant -> (prompting, score_concat, aux_weight)
VARIANTS = {
    "features": ("none", False, 0.0),
    "score": ("none", True, 0.0),
    "aux": ("none", True, 0.4),
    "full": ("post", True, 0.4),
    "pre": ("pre", True, 0.4),
}


def get_config(arg: str | None = None):
    arg = common.parse_arg(arg, size="tiny", data="shapes", variant="full")
    if arg.variant not in VARIANTS:
        raise ValueError(f"Unknown DenseCLIP variant {arg.variant!r}; use one of {sorted(VARIANTS)}.")
    config = clip_continued.post_pretraining(common.get_base_config(f"size={arg.size},data={arg.data}"))
    prompting, score_concat, aux_weight = VARIANTS[arg.variant]
    config.objective = "denseclip"
    config.denseclip = ml_collections.ConfigDict(
        dict(
            class_names=CLASS_SETS["shape"],
            context_tokens=8,
            prompting=prompting,
            decoder_depth=1,
            decoder_width=64,
            decoder_heads=4,
            head_width=64,
            score_concat=score_concat,
            aux_weight=aux_weight,
            temperature=0.07,
            clip_weight=0.0,
        )
    )
    config.optimizer.frozen_prefixes = clip_continued.MODEL_PARAMS
    config.optimizer.learning_rate = 1e-3
    config.optimizer.weight_decay = 1e-4  # the paper's AdamW
    config.data.train_size = 200  # the labelled images
    config.data.crop_scale = (1.0, 1.0)  # the masks hold only on the uncropped image
    config.batch_size = 32
    config.total_steps = 300
    config.eval_every_steps = config.checkpoint_every_steps = config.total_steps
    config.eval.num_examples = 200
    # path '': the held-out shapes masks; your held-out files with masks: --config.evals.segmentation.path (and .data)
    config.evals = ml_collections.ConfigDict({"segmentation": evaluator("segmentation", prefix="")})
    return config
