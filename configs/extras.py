"""Which optional install extra (setup.cfg) a config needs, found before jax starts.

The base install (`pip install -e .`) trains and evaluates every config on the embedded data and on
image-text files. A few switches read PyTorch-ecosystem files or draw report plots; they need an
extra, and a run that lacks it is refused with the one command that installs it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import ml_collections

# (extra, Python modules it provides, why the config needs it); the extras are setup.cfg's.
_INTEROP_TOKENIZERS = {"clip_bpe": ("ftfy", "regex"), "wordpiece": ("tokenizers",)}
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth")


def needed_modules(config: ml_collections.ConfigDict, mode: str = "train") -> list[tuple[str, tuple[str, ...], str]]:
    """[(extra, modules, reason)] the config and mode need beyond the base install."""
    needs = []
    tokenizer = config.text.tokenizer
    if tokenizer in _INTEROP_TOKENIZERS:
        needs.append(("interop", _INTEROP_TOKENIZERS[tokenizer], f"config.text.tokenizer={tokenizer}"))
    pretrained = config.init_from.pretrained
    if pretrained:
        modules = ("safetensors", "torch") if pretrained.endswith(_PICKLE_SUFFIXES) else ("safetensors",)
        needs.append(("interop", modules, "config.init_from.pretrained"))
    if mode == "eval":
        needs.append(("eval", ("matplotlib", "sklearn"), "--mode=eval (report plots, scikit-learn's digits)"))
    if mode == "export":
        needs.append(("interop", ("safetensors",), "--mode=export (a Hugging Face folder's model.safetensors)"))
    return needs


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def missing_extra(
    config: ml_collections.ConfigDict, mode: str = "train", installed: Callable[[str], bool] = _installed
) -> str | None:
    """One sentence naming the extra to install, or None when everything the config needs is importable."""
    for extra, modules, reason in needed_modules(config, mode):
        missing = [m for m in modules if not installed(m)]
        if missing:
            # The README's pin: pip then keeps PyTorch's CPU build instead of pulling several GB of CUDA.
            torch_pin = " torch==2.13.0 torchvision==0.28.0" if extra == "interop" else ""
            return (
                f"{reason} needs the `{extra}` extra ({', '.join(missing)} not installed); "
                f"install it with pip install -e '.[{extra}]'{torch_pin}."
            )
    return None
