"""Helpers for the interop tests: skip cleanly without the `interop` extra, build tiny PyTorch models."""

from __future__ import annotations

import numpy as np
import pytest

from interop.torchvision_ops import declare_torchvision_ops


def require_torch():
    """(torch, transformers), or a skip naming the missing extra. The CPU torchvision wheel needs its ops
    registered before import, or transformers' and open_clip's imports fail (see ENVIRONMENT.md)."""
    reason = "the interop extra is not installed (pip install -e '.[interop]')"
    torch = pytest.importorskip("torch", reason=reason)
    declare_torchvision_ops(torch)
    transformers = pytest.importorskip("transformers", reason=reason)
    torch.manual_seed(0)
    return torch, transformers


def import_open_clip():
    """open_clip (after require_torch's torchvision fix)."""
    require_torch()
    return pytest.importorskip("open_clip", reason="the interop extra is not installed (pip install -e '.[interop]')")


def nested(flat: dict) -> dict:
    """{"a/b/c": x} -> {"a": {"b": {"c": x}}}."""
    tree: dict = {}
    for key, value in flat.items():
        node = tree
        *parents, leaf = key.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def sample_texts(rng: np.random.Generator, count: int = 300) -> list[str]:
    """Captions, unicode, HTML entities, punctuation and overlong texts for tokenizer comparisons."""
    words = ["a", "photo", "of", "the", "red", "circle", "square", "don't", "it's", "café", "naïve", "Über",
             "日本語", "テキスト", "😀", "🙂🙃", "&amp;", "&lt;b&gt;", "2021", "3.14", "e-mail", "C++", "x_y",
             "ﬁne", "ＡＢＣ", "Ελληνικά", "русский", "עברית", "مرحبا", "  ", "\t", "!!!", "?", "l'été", "Straße",
             "tokenization", "unbelievably", "scarlet", "round", "object", "MiXeD", "CASE"]  # fmt: skip
    texts = []
    for i in range(count):
        n = int(rng.integers(1, 12)) if i % 10 else int(rng.integers(60, 120))  # every tenth overlong
        texts.append(" ".join(words[int(j)] for j in rng.integers(0, len(words), n)))
    return texts + ["", "a photo of a scarlet round object.", "A Photo Of A RED Circle!"]


def two_tower(model_config: dict):
    """Our TwoTower for a converter's `model_config` (towers, widths, projections), logit scale 0."""
    import ml_collections

    from models.two_tower import TwoTower

    return TwoTower(
        image=ml_collections.ConfigDict(model_config["image"]),
        text=ml_collections.ConfigDict(model_config["text"]),
        embed_dim=model_config["embed_dim"],
        vocab_size=model_config["vocab_size"],
        logit_scale_init=0.0,
        image_projection=model_config.get("image_projection", "linear"),
        text_projection=model_config.get("text_projection", "linear"),
    )
