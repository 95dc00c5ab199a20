"""CLOC (Chen et al. 2025): CLIP + promptable region embeddings (a box prompter over the image tower's patch
tokens) with region-text InfoNCE, and a grounding head that finds a region caption's box (losses/cloc.py).

    python main.py --config=configs/cloc.py --workdir=runs/cloc

Keys of config.cloc:
- region_weight: weight of the region-text InfoNCE over every region of the batch;
- grounding_weight: weight of the grounding head's box loss (l1_weight L1 + giou_weight (1 - GIoU), DETR's 5 and 2).
config.model.region_depth sets the prompter's and the grounding head's cross-attention blocks (1). The `regions`
evaluator (evaluation/region_eval.py) scores region classification and grounding on held-out multi-object
images, beside the prompter-free baseline (the patch tokens under the box, averaged) and chance.
`--config.cloc.region_weight=0 --config.cloc.grounding_weight=0` trains plain CLIP with the same heads and
evaluator: the paired baseline.
"""

import ml_collections

from configs import common
from configs.evaluators import evaluator


def get_config(arg: str | None = None):
    config = common.get_base_config(arg)
    config.objective = "cloc"
    config.cloc = ml_collections.ConfigDict(
        dict(region_weight=1.0, grounding_weight=1.0, l1_weight=5.0, giou_weight=2.0)
    )
    config.model.region_depth = 1
    config.data.crop_scale = (1.0, 1.0)  # the boxes hold only on the uncropped image
    config.evals.regions = evaluator("regions", prefix="")
    return config
