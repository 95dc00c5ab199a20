"""config.init_from.pretrained: start a run from a converted PyTorch-ecosystem checkpoint.

The checkpoint is converted on the host (converters.py: CLIP, SigLIP or BERT, by its contents), then
the parameters under config.init_from.param_prefixes replace the freshly initialised ones. Shapes
and the architecture switches the checkpoint needs (activation, LayerNorm epsilon, pooling, tower
kind) are checked against the config first, all mismatches named in one error.
"""

from __future__ import annotations

import dataclasses

import jax
import ml_collections
from absl import logging

from interop import mismatch
from interop.converters import convert_checkpoint, needs_for
from models.param_paths import param_shapes
from models.text_towers import TEXT_TOWERS
from models.vit import VisionTransformer


def load_pretrained_params(config: ml_collections.ConfigDict, params) -> tuple[dict, list[str]]:
    """`params` with the leaves under config.init_from.param_prefixes replaced by the converted checkpoint's,
    placed like the leaves they replace. Returns (params, copied paths)."""
    converted, needs = convert_checkpoint(config.init_from.pretrained, config.model.text.max_len)
    prefixes = [p.strip("/") for p in config.init_from.param_prefixes]
    under = lambda path: any(path == p or path.startswith(p + "/") for p in prefixes)  # noqa: E731
    expected = {p: s for p, s in param_shapes(params).items() if under(p)}
    chosen = {p: v.shape for p, v in converted.items() if under(p)}
    source = repr(config.init_from.pretrained)
    relevant = needs_for(needs, prefixes)
    wrong = {k: v for k, v in relevant.items() if _get(config, k) != v}
    sizes = {k: v for k, v in wrong.items() if k.rsplit(".", 1)[1] in _SIZE_KEYS}
    # A wrong switch (activation, epsilon, pooling, kind, stem) shows in no shape: name every wrong key.
    # With only sizes wrong, name the parameters and shapes that differ, and the size keys that fix them.
    if len(wrong) > len(sizes):
        switches = [f"config.{k} is {_get(config, k)!r} but the checkpoint needs {v!r}" for k, v in wrong.items()]
        mismatch.raise_mismatch(source, switches, "set those config keys to the checkpoint's values.")
    mismatch.check_shapes(chosen, expected, source, sizes={f"config.{k}": v for k, v in sizes.items()})
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    names = {path: "/".join(str(getattr(k, "key", k)) for k in path) for path, _ in flat}

    def replace(path, leaf):
        name = names[path]
        return jax.device_put(converted[name].astype(leaf.dtype), leaf.sharding) if name in chosen else leaf

    return jax.tree_util.tree_map_with_path(replace, params), sorted(chosen)


def init_state_from_pretrained(config: ml_collections.ConfigDict, state, objective, inputs=None):
    """The fresh train `state` with converted pretrained params, and the objective's extra state rebuilt from
    them (and its host `inputs`, training/objective_inputs.py)."""
    params, copied = load_pretrained_params(config, state.params)
    logging.info("Initialised %d parameters under %s from %s", len(copied), list(config.init_from.param_prefixes),
                 config.init_from.pretrained)  # fmt: skip
    extra = jax.tree.map(
        lambda new, old: jax.device_put(new, old.sharding),
        objective.init_extra(params, config, inputs or {}),
        state.extra,
    )
    return state.replace(params=params, extra=extra)


# Config keys that only set parameter shapes; a mismatch in them is reported through the shapes.
_SIZE_KEYS = (
    "width", "depth", "heads", "patch_size", "max_len", "mlp_dim", "embed_dim", "image_size", "kv_heads", "vocab_size"
)  # fmt: skip


def _get(config: ml_collections.ConfigDict, dotted: str):
    """config's value at "a.b.c". A tower option the config leaves out (model.text.mlp_dim) reads as the
    tower module's default, which is what the model is built with."""
    value = config
    for part in dotted.split("."):
        if part not in value:
            return _module_default(config, dotted)
        value = value[part]
    return value


def _module_default(config: ml_collections.ConfigDict, dotted: str):
    tower, name = dotted.split(".")[1], dotted.rsplit(".", 1)[1]
    module = VisionTransformer if tower == "image" else TEXT_TOWERS.get(config.model.text.get("kind", "clip"))
    fields = {f.name: f.default for f in dataclasses.fields(module)} if module else {}
    if not dotted.startswith("model.") or name not in fields:
        raise KeyError(f"config.{dotted} is unset and no tower has a default for it")
    return fields[name]
