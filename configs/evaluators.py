"""The evaluator types config.evals can name, their options with defaults, and `evaluator`, which builds an
entry of config.evals (what each type scores: evaluation/eval_types.py)."""

from __future__ import annotations

import ml_collections

from configs.errors import ConfigError

NAME_PREFIX = "{name}/"  # the `prefix` default: the entry's name, then a slash
# type -> {option: default}; every type also takes `prefix`.
EVAL_TYPES: dict[str, dict] = {
    "shapes_zero_shot": {},
    "retrieval": {"data": "", "path": "", "split": "test"},
    "sts": {},
    "dialog": {"path": ""},
    "second_language_retrieval": {},
    "proclip_text": {},
    "regions": {},
    "segmentation": {"data": "", "path": ""},
    "video": {"frames": 0},
    "language": {
        "path": "", "num_prompts": 0, "prompt_words": 6,
        "strategies": ("greedy", "beam", "top_k", "nucleus", "contrastive"),
    },
    "knowledge_conflict": {},
    "preference": {"num_samples": 0, "path": ""},
    "fact_probe": {},
    "minimal_pairs": {"per_phenomenon": 100},
    "prompt_accuracy": {},
    "class_incremental": {},
    "captioning": {},
    "in_context": {},
    "edits": {"sample_steps": 20, "text_guidance": 1.0},
}  # fmt: skip


def evaluator(type: str, **options) -> ml_collections.ConfigDict:
    """An entry of config.evals: `type`, `prefix` and every other option of the type, `options` over the defaults.

    Every option is spelled because ml_collections refuses to override a key the entry lacks: with them all
    there, `--config.evals.<entry>.<option>=...` reaches any documented option."""
    if type not in EVAL_TYPES:
        raise ConfigError(f"Unknown evaluator type {type!r}; use one of {sorted(EVAL_TYPES)}.")
    defaults = {"prefix": NAME_PREFIX, **EVAL_TYPES[type]}
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ConfigError(f"{unknown[0]!r} is not an option of the {type} evaluator; use one of {sorted(defaults)}.")
    return ml_collections.ConfigDict({"type": type, **defaults, **options})
