"""X-CLIP (Ni et al. 2022): video-text contrastive learning on the image tower, with cross-frame messages in
its blocks, a multi-frame integration transformer and video-specific prompting (models/video.py,
losses/xclip.py), on the embedded clips (input_pipeline/shape_video.py).

    python main.py --config=configs/xclip.py --workdir=runs/xclip

Keys of config.xclip:
- prompt_weight: weight of the prompted cross-entropy over each clip's caption and its hard negatives (the
  caption with each other motion) beside the video-text InfoNCE over the batch; 0 trains the video modules
  without the prompt term.
config.model.video_frames sets the frames per clip (4 of the clips' 8, X-CLIP's segment sampling). The run
trains from scratch, so that this one command stands alone; to start from an image-text CLIP run as the paper
does, add --config.init_from.workdir=<its workdir> with --config.init_from.param_prefixes (docs/video.md). The
`video` evaluator (evaluation/video_eval.py) scores zero-shot motion and appearance and video-text retrieval
beside the mean of frame embeddings and chance.
"""

import ml_collections

from configs import common
from configs.evaluators import evaluator


def get_config(arg: str | None = None):
    config = common.get_base_config(arg)
    config.objective = "xclip"
    config.xclip = ml_collections.ConfigDict(dict(prompt_weight=1.0))
    config.data.name = "shapes_video"
    config.model.video_frames = 4
    if config.model.image.width == common.IMAGE_SIZES["tiny"]["width"]:
        # Four frames per clip cost four images: a narrower, shallower tower at 32 px (4 x 4 tokens from a
        # 3-conv stem) keeps a step near the image runs' cost on a CPU.
        config.data.update(image_size=32, train_size=10_000)
        config.model.image.update(width=64, depth=2, heads=2, patch_size=8, conv_stem_depth=3)
        # max_len 40: the held-out prompts' unseen words ("footage") split into many pieces.
        config.model.text.update(width=64, depth=2, heads=2, max_len=40)
        config.model.embed_dim = 64
        config.batch_size = 64
        config.total_steps = 300
        config.eval_every_steps = 300
        config.eval.num_examples = 600
    config.evals = ml_collections.ConfigDict({"video": evaluator("video", prefix="")})
    return config
