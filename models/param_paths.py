"""Parameters named by their path in a params tree, "image_tower/encoder/block0/attn/query/kernel": the names that
the sharding rules, the checkpoint checks and the weight converters match on."""

from __future__ import annotations

import jax


def path_name(path) -> str:
    """A leaf's key path (dict keys, sequence indices or attribute names) joined by "/"."""
    return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def param_shapes(params) -> dict[str, tuple[int, ...]]:
    """{"image_tower/patchify/kernel": shape} for a params pytree of arrays, ShapeDtypeStructs or orbax metadata."""
    flat, _ = jax.tree_util.tree_flatten_with_path(params, is_leaf=lambda x: hasattr(x, "shape"))
    return {path_name(path): tuple(leaf.shape) for path, leaf in flat}
