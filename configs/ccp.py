"""CCP (Wu et al. 2022): context-aware sentence pretraining on documents (losses/ccp.py, reconstructed).

    python main.py --config=configs/ccp.py --workdir=runs/ccp
    python main.py --config=configs/ccp.py --workdir=runs/ccp_mine --config.data.name=documents \
        --config.data.path=docs.jsonl --config.ccp.num_languages=5   # {"sentences": [...], "language": "de"}

Trains the text tower on centre/context sentence pairs from the embedded two-language documents
(input_pipeline/sentences.py) and reports STS Spearman x 100 on the embedded English pairs, raw and
with the per-language calibration applied at inference (`sts_calibrated/*`).
Keys of config.ccp: `temperature` (0.05; the paper's is not known), `queue_size` (bank entries per
language, >= batch_size), `num_languages` (banks; >= the languages in the data) and `asymmetric_bn`
(batch-standardise the centre branch only). The window is `data.context_window`.
"""

import ml_collections

from configs import common
from configs.simcse import text_only


def get_config(arg: str | None = None):
    arg = common.parse_arg(arg, size="tiny")
    config = text_only(common.get_base_config(f"size={arg.size}"), "shape_documents")
    config.objective = "ccp"
    config.ccp = ml_collections.ConfigDict(dict(temperature=0.05, queue_size=1024, num_languages=2, asymmetric_bn=True))
    return config
