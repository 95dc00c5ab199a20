"""One entry point for the contrastive losses: kind (softmax | sigmoid) x implementation, chosen by name.

The names of kinds, implementations and tile sizes, and their checks: losses/loss_options.py.

Implementations, with identical values and gradients (tests/test_distributed_losses.py):
- `dense`: the global [B, B] matrix; sharding left to the compiler.
- `gathered`: shard_map; each device computes its rows against all-gathered columns, gradient through
  the gather (losses/gathered.py). Per device O(B d + b B) memory, b = B / devices.
- `ring`: shard_map + ppermute; text (column) blocks travel round the batch axis and no device holds
  more than a b x b block of logits; custom VJP, so the backward pass does the same (losses/tiled.py).
- `tiled`: one device, tile x tile blocks with a custom VJP (online log-sum-exp forward, tiles
  recomputed backward): O(B d + tile^2) memory.
- `ring_tiled`: the ring, each b x b block itself done in tiles: O(b d + tile^2) per device.
- `fused`: one device, the tiled loss with each block's matmul and reductions fused in a Pallas kernel
  (losses/fused.py; GPU, and CPU in interpret mode); plain pairs only (FUSED_FEATURES), tile_size a power of two.

Padding: blockwise implementations pad the rows to a multiple of the tile internally (any B works);
distributed ones need B to be a multiple of the devices on the batch axis. Callers may pass `valid`
[B] to leave rows (and their columns) out, e.g. to pad a global batch.

Beyond plain CLIP / SigLIP, keyword arguments express what the methods need, in every
implementation with identical values and gradients (tests/test_contrastive_features.py); where a
combination cannot be distributed it is in `SUPPORTED` and raises, naming the fix:
- false negatives from per-example data (losses/pairs.py): `group` (duplicates: equal groups are not
  negatives), `domain` (only same-domain negatives), `false_negative_margin` (UniME: negatives whose
  cosine exceeds the anchor's positive cosine + margin are dropped, decided inside each tile);
- `weights` [B]: per-example weights of the loss terms (ALIP), normalised by their sum;
- several positives: text [B, K, D] (DreamLIP's sub-captions: each image has K positive columns, its
  term is lse - mean of the K positive logits; each text keeps its one image) or `positive_group` [B]
  (every pair within a group is positive);
- extra negatives (losses/extra_negatives.py): `hard_negatives` [B, H, D] for image i only, and
  shared banks `text_bank` (columns of every image row) / `image_bank` (rows of every text column);
- `soft_targets` (losses.contrastive.SoftTargets): the target over in-batch columns is the softmax of
  teacher logits recomputed tile by tile from teacher embeddings, blended with the one-hot positive
  by alpha; the loss is the cross-entropy (KL minus the teacher's entropy, a constant);
- `directions` (softmax): "both" (CLIP's 1/2 (i2t + t2i)), "image_to_text" or "text_to_image".

Metrics: the softmax loss gives in-batch i2t/t2i top-1 accuracy in every implementation (argmax is
tracked next to the online max, ties go to the lower index as in jnp.argmax); the sigmoid loss none.

Mesh: distributed implementations use `mesh` if given, else the mesh installed with
`jax.set_mesh(...)` around the caller (the trainer's); with neither they raise ValueError. Objectives
only get the config, so they rely on the trainer's `jax.set_mesh`. The batch is split
over `axis_name`: one mesh axis or a tuple of them; by default every batch axis of the mesh ("data",
and "fsdp" where the mesh has one), so the ring runs over all devices that hold examples.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from losses import fused
from losses.extra_negatives import NegativeBank, sigmoid_extra_loss, softmax_seed
from losses.gathered import gathered_sigmoid_row_loss, gathered_softmax_terms
from losses.loss_options import (  # noqa: F401 (the names callers import from here)
    ALL_IMPLEMENTATIONS,
    DEFAULT_TILE_SIZE,
    DISTRIBUTED,
    FUSED,
    IMPLEMENTATIONS,
    KINDS,
    LOW_PRECISION_IMPLEMENTATIONS,
    MATMUL_DTYPES,
    TILE_SIZE_BY_PLATFORM,
    check_loss_options,
    implementation_options,
    resolve_mesh,
    resolve_tile_size,
)
from losses.pairs import pair_masks
from losses.sigmoid import sigmoid_loss_from_stats, sigmoid_row_loss_dense
from losses.softmax import all_valid, logits_from_scale, softmax_loss_from_terms, softmax_terms_dense
from losses.tiled import sigmoid_row_loss, softmax_terms
from models.mesh_axes import batch_axes


def _pad_side(side: dict, tile: int) -> dict:
    """Pads every [n, ...] entry to a multiple of `tile`; padding has valid=False and no seed mass."""
    pad = -side["valid"].shape[0] % tile
    if not pad:
        return side
    fill = {"seed_max": jnp.finfo(side.get("seed_max", jnp.zeros(())).dtype).min}
    return {
        key: jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1), constant_values=fill.get(key, 0))
        for key, a in side.items()
    }


def _split_seed(side: dict) -> tuple[dict, dict]:
    """(side without its seed, seed dict keyed as losses.tiled.softmax_terms wants with `prefix`)."""
    data = {k: v for k, v in side.items() if k not in ("seed_max", "seed_sum")}
    return data, {k[len("seed_") :]: v for k, v in side.items() if k.startswith("seed_")}


def _tiled_softmax(tile, matmul_dtype, axis_name, axis_size, alpha, x, y, logit_scale, rows, cols, teacher_logit_scale):
    """losses.tiled.softmax_terms on sides padded to the tile (seeds travel in the side dicts), unpadded."""
    n_rows, n_cols = x.shape[0], y.shape[0]
    rows, cols = _pad_side({**rows, "x": x}, tile), _pad_side({**cols, "x": y}, tile)
    rows, row_seed = _split_seed(rows)
    cols, col_seed = _split_seed(cols)
    seeds = {f"row_{k}": v for k, v in row_seed.items()} | {f"col_{k}": v for k, v in col_seed.items()}
    x, y = rows.pop("x"), cols.pop("x")
    out = softmax_terms(
        tile, axis_name, axis_size, alpha, matmul_dtype, x, y, logit_scale, rows, cols, seeds, teacher_logit_scale
    )
    return out[0][:n_rows], out[1][:n_cols], out[2][:n_rows], out[3][:n_cols]


def _with_seed(side: dict, seed) -> dict:
    return side if seed is None else {**side, "seed_max": seed[0], "seed_sum": seed[1]}


def _local_terms(
    kind, mode, tile, matmul_dtype, axis_name, axis_size, alpha, x, y, scalars, rows, cols, hard, banks, teacher_scale
):
    """Per-anchor terms of the rows x [R, d] / columns y [C, d] this call holds (all of them, or a
    device's inside shard_map). mode: "dense", "gathered" or "tiled" (one device or a ring).
    matmul_dtype: None (the embeddings' dtype) or the in-batch logits' operand dtype (MATMUL_DTYPES).

    softmax: (row_term [R], col_term [C], row_argmax [R], col_argmax [C]);
    sigmoid: (row_loss [R], text extra loss [C]), the in-batch and extra pair losses.
    """
    text_bank, image_bank = banks
    if mode == FUSED:
        return _fused_terms(kind, tile, matmul_dtype, x, y, scalars, rows, cols)
    chunk = None if mode == "gathered" or mode == "dense" else tile
    scale = jnp.exp(scalars[0])
    if kind == "sigmoid":
        bias = scalars[1]
        if mode == "dense":
            logits = logits_from_scale(x, y, scalars[0], matmul_dtype)
            positive, keep, _ = pair_masks(rows, cols, logits)
            row_loss = sigmoid_row_loss_dense(logits, positive, keep, bias)
        elif mode == "gathered":
            row_loss = gathered_sigmoid_row_loss(x, y, *scalars, rows, cols, axis_name=axis_name)
        else:
            padded_rows, padded_cols = _pad_side({**rows, "x": x}, tile), _pad_side({**cols, "x": y}, tile)
            px, py = padded_rows.pop("x"), padded_cols.pop("x")
            row_loss = sigmoid_row_loss(
                tile, axis_name, axis_size, matmul_dtype, px, py, *scalars, padded_rows, padded_cols
            )
            row_loss = row_loss[: x.shape[0]]
        row_extra = sigmoid_extra_loss(x, rows, scale, bias, *hard, text_bank, chunk)
        col_extra = sigmoid_extra_loss(y, cols, scale, bias, None, None, image_bank, chunk)
        row_loss = row_loss if row_extra is None else row_loss + row_extra
        return row_loss, jnp.zeros(y.shape[:1], row_loss.dtype) if col_extra is None else col_extra
    row_seed = softmax_seed(x, rows, scale, *hard, text_bank, chunk)
    col_seed = softmax_seed(y, cols, scale, None, None, image_bank, chunk)
    if mode == "tiled":
        rows, cols = _with_seed(rows, row_seed), _with_seed(cols, col_seed)
        return _tiled_softmax(
            tile, matmul_dtype, axis_name, axis_size, alpha, x, y, scalars[0], rows, cols, teacher_scale
        )
    if mode == "gathered":
        seeds = {}
        for prefix, seed in (("row", row_seed), ("col", col_seed)):
            if seed is not None:
                seeds.update({f"{prefix}_max": seed[0], f"{prefix}_sum": seed[1]})
        return gathered_softmax_terms(
            x, y, scalars[0], rows, cols, seeds, teacher_scale, axis_name=axis_name, alpha=alpha
        )
    logits = logits_from_scale(x, y, scalars[0], matmul_dtype)
    positive, row_keep, col_keep = pair_masks(rows, cols, logits)
    teacher = None
    if teacher_scale is not None:
        teacher = logits_from_scale(rows["teacher"], cols["teacher"], jax.lax.stop_gradient(teacher_scale))
    row_term, row_arg = softmax_terms_dense(logits, positive, row_keep, cols["index"], row_seed, teacher, alpha)
    teacher_t = None if teacher is None else teacher.T
    col_term, col_arg = softmax_terms_dense(logits.T, positive.T, col_keep.T, rows["index"], col_seed, teacher_t, alpha)
    return row_term, col_term, row_arg, col_arg


def _fused_terms(kind, block, matmul_dtype, x, y, scalars, rows, cols):
    """_local_terms of the fused kernels (losses/fused.py) on sides padded to the block, unpadded."""
    rows, cols = _pad_side({**rows, "x": x}, block), _pad_side({**cols, "x": y}, block)
    px, py = rows.pop("x"), cols.pop("x")
    if kind == "sigmoid":
        row_loss = fused.sigmoid_row_loss(block, matmul_dtype, px, py, *scalars, rows, cols)[: x.shape[0]]
        return row_loss, jnp.zeros(y.shape[:1], row_loss.dtype)
    out = fused.softmax_terms(block, matmul_dtype, px, py, scalars[0], rows, cols)
    return out[0][: x.shape[0]], out[1][: y.shape[0]], out[2][: x.shape[0]], out[3][: y.shape[0]]


def _check_one_device(mesh) -> None:
    """The fused kernels take the whole batch: under a mesh that splits it, each device would redo all of it."""
    mesh = jax.sharding.get_abstract_mesh() if mesh is None else mesh
    devices = 1 if mesh.empty else math.prod(mesh.shape[name] for name in batch_axes(mesh))
    if devices > 1:
        raise ValueError(
            f"implementation='fused' runs on one device, but the mesh splits the batch over {devices}; set "
            "config.loss.implementation='ring_tiled' (or a one-device mesh)."
        )


def _statistics(
    kind, implementation, tile_size, matmul_dtype, mesh, axis_name, alpha, x, y, scalars, rows, cols, hard, banks,
    teacher_scale,
):  # fmt: skip
    """_local_terms over the whole batch, by `implementation`."""
    if implementation == FUSED:
        _check_one_device(mesh)
    if implementation in ("dense", "tiled", FUSED):
        # The fused kernels pad to their block; the tiled loss shrinks its tile to a small batch.
        tile = tile_size if implementation == FUSED else min(tile_size, x.shape[0])
        args = (alpha, x, y, scalars, rows, cols, hard, banks, teacher_scale)
        return _local_terms(kind, implementation, tile, matmul_dtype, None, 1, *args)
    mesh, axis_name, axis_size = resolve_mesh(mesh, axis_name)
    if x.shape[0] % axis_size:
        raise ValueError(
            f"Implementation {implementation!r} needs the batch ({x.shape[0]}) to be a multiple of the "
            f"{axis_size} devices on mesh axes {list(axis_name)}; change the batch size or use 'dense' or 'tiled'."
        )
    mode = "gathered" if implementation == "gathered" else "tiled"

    def per_device(x, y, scalars, rows, cols, hard, banks, teacher_scale):
        # `ring` is `ring_tiled` with a single b x b tile per round.
        tile = x.shape[0] if implementation == "ring" else min(tile_size, x.shape[0])
        args = (alpha, x, y, scalars, rows, cols, hard, banks, teacher_scale)
        return _local_terms(kind, mode, tile, matmul_dtype, axis_name, axis_size, *args)

    batch = P(axis_name)
    fn = jax.shard_map(
        per_device,
        mesh=mesh,
        in_specs=(batch, batch, P(), batch, batch, batch, P(), P()),
        out_specs=batch,
        axis_names=set(axis_name),
    )
    return fn(x, y, scalars, rows, cols, hard, banks, teacher_scale)


class SoftTargets(NamedTuple):
    """A teacher's in-batch similarity distribution as the target (ProtoCLIP, CLIP-Refine's HyCD, distillation).

    image [B, Dt], text [B, Dt] (or [B, K, Dt] with K positives) teacher embeddings; logit_scale: log
    of the teacher's scale (no gradient reaches the teacher); alpha: weight of the one-hot (uniform over
    positives) target, 1 - alpha on softmax(teacher logits) over the same candidates.
    """

    image: jax.Array
    text: jax.Array
    logit_scale: jax.Array
    alpha: float = 0.0


# feature -> kind -> implementations that compute it; every other combination raises (_check_features).
_ALL = {"softmax": IMPLEMENTATIONS, "sigmoid": IMPLEMENTATIONS}
_PLAIN = {"softmax": ALL_IMPLEMENTATIONS, "sigmoid": ALL_IMPLEMENTATIONS}  # the fused kernels' features too
SUPPORTED = {
    "valid": _PLAIN,
    "weights": _PLAIN,
    "group": _ALL,
    "domain": _ALL,
    "false_negative_margin": _ALL,
    "positive_group": _PLAIN,
    "multiple_positives": _PLAIN,
    "hard_negatives": _ALL,
    "text_bank": _ALL,
    "image_bank": _ALL,
    # A teacher's soft sigmoid labels are a different loss (per-pair binary targets): not defined here.
    "soft_targets": {"softmax": IMPLEMENTATIONS, "sigmoid": ()},
    # The sigmoid loss is a sum over pairs: it has no directions.
    "directions": {"softmax": ALL_IMPLEMENTATIONS, "sigmoid": ()},
}
FUSED_FEATURES = tuple(feature for feature, where in SUPPORTED.items() if FUSED in where["softmax"])
DIRECTIONS = ("both", "image_to_text", "text_to_image")


def _check_features(kind: str, implementation: str, features: list[str], directions: str) -> None:
    if directions not in DIRECTIONS:
        raise ValueError(f"Unknown directions {directions!r}; use one of {list(DIRECTIONS)}.")
    for feature in features:
        where = SUPPORTED[feature][kind]
        if implementation not in where:
            fix = f"use implementation one of {list(where)}" if where else "use kind='softmax'"
            raise ValueError(f"{feature} is not available for kind={kind!r}, implementation={implementation!r}; {fix}.")
    extras = [f for f in ("hard_negatives", "text_bank", "image_bank") if f in features]
    if "soft_targets" in features and extras:
        raise ValueError(
            f"soft_targets cover the in-batch candidates only, not {extras}; drop those or add the extra "
            "candidates' teacher logits as in-batch columns."
        )


def _sides(x, text, logit_scale, valid, index, group, domain, margin, soft_targets):
    """Side dicts (losses/pairs.py) of the rows [B] and the columns [B K], from per-example data."""
    batch, per_example = text.shape[0], text.shape[1]
    rows = {"index": index, "valid": valid}
    if group is not None:
        rows["group"] = group.astype(index.dtype)
    if domain is not None:
        rows["domain"] = domain.astype(index.dtype)
    cols = {key: jnp.repeat(a, per_example) for key, a in rows.items()}
    if margin is not None:
        # UniME's rule S_ij > S_ii + margin in logit units; a mask decision, so no gradient.
        positive_cosine = jax.lax.stop_gradient(jnp.einsum("bd,bkd->bk", x, text))
        scale = jax.lax.stop_gradient(jnp.exp(logit_scale))
        rows["threshold"] = scale * (jnp.mean(positive_cosine, 1) + margin)
        cols["threshold"] = scale * (positive_cosine.reshape(-1) + margin)
    if soft_targets is not None:
        rows["teacher"] = jax.lax.stop_gradient(soft_targets.image)
        teacher_text = jax.lax.stop_gradient(soft_targets.text)
        cols["teacher"] = teacher_text.reshape(batch * per_example, -1)
    return rows, cols


def contrastive_loss(
    image_embedding: jax.Array,
    text_embedding: jax.Array,
    logit_scale: jax.Array,
    logit_bias: jax.Array | None = None,
    *,
    kind: str = "softmax",
    implementation: str = "dense",
    tile_size: int = DEFAULT_TILE_SIZE,
    matmul_dtype: str = "float32",
    mesh: jax.sharding.Mesh | jax.sharding.AbstractMesh | None = None,
    axis_name: str | tuple[str, ...] | None = None,
    valid: jax.Array | None = None,
    weights: jax.Array | None = None,
    group: jax.Array | None = None,
    domain: jax.Array | None = None,
    false_negative_margin: float | None = None,
    positive_group: jax.Array | None = None,
    hard_negatives: jax.Array | None = None,
    hard_negative_valid: jax.Array | None = None,
    text_bank: NegativeBank | None = None,
    image_bank: NegativeBank | None = None,
    soft_targets: SoftTargets | None = None,
    directions: str = "both",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Softmax (CLIP) or sigmoid (SigLIP) loss of normalised embeddings, by any implementation.

    image_embedding [B, D]; text_embedding [B, D], or [B, K, D] for K positive texts per image.
    logit_scale: scalar log of the scale; logit_bias: scalar bias (sigmoid only); valid: [B] bool,
    rows to keep (default all). tile_size applies to `tiled` and `ring_tiled` (and the bank chunks);
    0 = the backend's edge (resolve_tile_size). matmul_dtype: the in-batch logits' operand dtype
    (MATMUL_DTYPES; extra negatives and teacher logits stay float32).
    weights [B] float; group, domain, positive_group [B] int; false_negative_margin: cosine margin;
    hard_negatives [B, H, D] with hard_negative_valid [B, H] bool; text_bank, image_bank:
    NegativeBank; soft_targets: SoftTargets; directions: softmax only (module docstring).
    Returns (loss, metrics) as losses.softmax.softmax_contrastive_loss /
    losses.sigmoid.sigmoid_contrastive_loss (accuracies over in-batch ids and extra candidates).
    """
    check_loss_options(kind, implementation, tile_size, matmul_dtype)
    tile_size = resolve_tile_size(tile_size, implementation=implementation)
    text = text_embedding[:, None] if text_embedding.ndim == 2 else text_embedding
    if image_embedding.ndim != 2 or text.ndim != 3 or text.shape[::2] != image_embedding.shape:
        raise ValueError(
            f"Image and text embeddings must be [batch, dim] and [batch, dim] or [batch, positives, dim], got "
            f"{image_embedding.shape} and {text_embedding.shape}; pass one embedding per example from each tower."
        )
    if kind == "sigmoid" and logit_bias is None:
        raise ValueError("The sigmoid loss needs logit_bias; pass the model's learnable bias.")
    options = {
        "valid": valid, "weights": weights, "group": group, "domain": domain,
        "false_negative_margin": false_negative_margin, "positive_group": positive_group,
        "multiple_positives": None if text_embedding.ndim == 2 else text_embedding,
        "hard_negatives": hard_negatives, "text_bank": text_bank, "image_bank": image_bank,
        "soft_targets": soft_targets, "directions": None if directions == "both" else directions,
    }  # fmt: skip
    _check_features(kind, implementation, [name for name, value in options.items() if value is not None], directions)
    batch = image_embedding.shape[0]
    valid = all_valid(image_embedding) if valid is None else valid.astype(bool)
    index = jnp.arange(batch)
    index = index if positive_group is None else positive_group.astype(index.dtype)
    rows, cols = _sides(
        image_embedding, text, logit_scale, valid, index, group, domain, false_negative_margin, soft_targets
    )
    scalars = (logit_scale,) if kind == "softmax" else (logit_scale, logit_bias)
    hard = (hard_negatives, hard_negative_valid)
    teacher_scale = None if soft_targets is None else jnp.asarray(soft_targets.logit_scale)
    alpha = 1.0 if soft_targets is None else float(soft_targets.alpha)
    y = text.reshape(-1, text.shape[-1])
    low_precision = None if matmul_dtype == "float32" else matmul_dtype
    stats = _statistics(
        kind, implementation, tile_size, low_precision, mesh, axis_name, alpha,
        image_embedding, y, scalars, rows, cols, hard, (text_bank, image_bank), teacher_scale,
    )  # fmt: skip
    if kind == "softmax":
        return softmax_loss_from_terms(stats, rows["index"], cols["index"], valid, cols["valid"], weights, directions)
    row_loss, text_extra = stats
    per_example = row_loss + jnp.sum(text_extra.reshape(batch, -1), 1)
    return sigmoid_loss_from_stats(per_example, valid, weights)
