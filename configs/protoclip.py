"""ProtoCLIP (Chen et al. 2023): CLIP + prototype-level discrimination with episodic k-means prototypes,
prototypical back translation and a soft-target loss, after a one-episode InfoNCE warm-up
(losses/protoclip.py).

    python main.py --config=configs/protoclip.py --workdir=runs/protoclip

Scaled to the tiny CPU runs: heads 128 -> 256 -> 64 (the paper's 2048 hidden, 128 out), 32 prototypes
(the paper's 20,000 for 2.5M images), episodes of 50 steps (6,400 examples at batch 128).
Keys of config.protoclip:
- num_prototypes: k-means clusters K per modality;
- episode_steps: training steps per episode; the bank holds episode_steps x batch_size features;
- target_temperature: tau_t of the soft targets (0.01; <= 0 uses hard labels);
- proto_weight: weight of the prototype loss (1).
The heads' sizes are config.model.head_dim and config.model.head_hidden_dim.
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None):
    config = common.get_base_config(arg)
    config.objective = "protoclip"
    config.model.head_dim = 64
    config.model.head_hidden_dim = 256
    config.protoclip = ml_collections.ConfigDict(
        dict(num_prototypes=32, episode_steps=50, target_temperature=0.01, proto_weight=1.0)
    )
    return config
