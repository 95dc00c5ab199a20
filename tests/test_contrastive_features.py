"""Each feature of losses.contrastive.contrastive_loss, in every implementation, against a dense float64 reference.

The reference is written here from the definitions (one list of candidates per anchor, explicit
masks), not from losses/. Both run in float64: the point is that the algorithms are the same, so
values and gradients agree to 1e-7 relative.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from contrastive_reference import float64, unit_rows
from jax.sharding import Mesh

from losses.contrastive import IMPLEMENTATIONS, SUPPORTED, NegativeBank, SoftTargets, contrastive_loss

BATCH, DIM, TILE, K, H, Q = 40, 4, 3, 2, 2, 7  # 5 rows per device; neither 40, 5, 80 nor 7 is a multiple of 3

if jax.device_count() < 8:
    pytest.skip("needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8", allow_module_level=True)
MESHES = {
    "data8": Mesh(np.asarray(jax.devices()[:8]), ("data",)),
    "data4_fsdp2": Mesh(np.asarray(jax.devices()[:8]).reshape(4, 2), ("data", "fsdp")),
}


def _data(seed=0):
    rng = np.random.default_rng(seed)
    image = unit_rows(rng.normal(size=(BATCH, DIM)))
    valid = np.ones(BATCH, bool)
    valid[rng.permutation(BATCH)[:6]] = False
    return {
        "image": image,
        "text": unit_rows(image[:, None] + 0.6 * rng.normal(size=(BATCH, K, DIM))),
        "logit_scale": np.log(12.0),
        "logit_bias": -3.0,
        "valid": valid,
        "weights": rng.uniform(0.2, 2.0, BATCH),
        "group": rng.integers(0, 12, BATCH),
        "domain": rng.integers(0, 2, BATCH),
        "positive_group": rng.integers(0, 30, BATCH),
        "hard": unit_rows(rng.normal(size=(BATCH, H, DIM))),
        "hard_valid": rng.uniform(size=(BATCH, H)) > 0.3,
        "text_bank": unit_rows(rng.normal(size=(Q, DIM))),
        "text_bank_valid": rng.uniform(size=Q) > 0.2,
        "text_bank_group": rng.integers(0, 12, Q),
        "image_bank": unit_rows(rng.normal(size=(Q, DIM))),
        "teacher_image": unit_rows(image + 0.3 * rng.normal(size=(BATCH, DIM))),
        "teacher_text": unit_rows(rng.normal(size=(BATCH, DIM))),
    }


# Feature sets: name -> (kind, the contrastive_loss keywords it uses, text with K positives?).
CASES = {
    "masks_weights_extras": (
        "softmax",
        ("weights", "group", "domain", "margin", "hard", "text_bank", "image_bank"),
        False,
    ),
    "multiple_positives": ("softmax", ("weights", "group"), True),
    "positive_group_one_direction": ("softmax", ("positive_group", "image_to_text"), False),
    "soft_targets": ("softmax", ("group", "soft"), False),
    "sigmoid_everything": (
        "sigmoid",
        ("weights", "group", "domain", "margin", "hard", "text_bank", "image_bank", "positive_group"),
        True,
    ),
}
MARGIN, ALPHA, TEACHER_SCALE = -0.1, 0.3, np.log(20.0)
DIFFERENTIABLE = ("image", "text", "logit_scale", "logit_bias", "hard", "text_bank", "image_bank")


def _inputs(d, multiple):
    args = {name: jnp.asarray(d[name]) for name in DIFFERENTIABLE}
    if not multiple:
        args["text"] = args["text"][:, 0]
    return args


def _loss_under_test(kind, features, implementation, mesh, d):
    def loss(args):
        kw = {"valid": jnp.asarray(d["valid"])}
        if "weights" in features:
            kw["weights"] = jnp.asarray(d["weights"])
        for name in ("group", "domain", "positive_group"):
            if name in features:
                kw[name] = jnp.asarray(d[name])
        if "margin" in features:
            kw["false_negative_margin"] = MARGIN
        if "hard" in features:
            kw.update(hard_negatives=args["hard"], hard_negative_valid=jnp.asarray(d["hard_valid"]))
        if "text_bank" in features:
            valid, group = (jnp.asarray(d[f"text_bank_{k}"]) for k in ("valid", "group"))
            kw["text_bank"] = NegativeBank(args["text_bank"], valid, group if "group" in features else None)
        if "image_bank" in features:
            kw["image_bank"] = NegativeBank(args["image_bank"])
        if "soft" in features:
            teacher = (jnp.asarray(d["teacher_image"]), jnp.asarray(d["teacher_text"]), jnp.float64(TEACHER_SCALE))
            kw["soft_targets"] = SoftTargets(*teacher, alpha=ALPHA)
        if "image_to_text" in features:
            kw["directions"] = "image_to_text"
        bias = args["logit_bias"] if kind == "sigmoid" else None
        options = dict(kind=kind, implementation=implementation, tile_size=TILE, mesh=mesh)
        return contrastive_loss(args["image"], args["text"], args["logit_scale"], bias, **options, **kw)[0]

    return loss


def _logsumexp(logits, keep):
    peak = jax.lax.stop_gradient(jnp.max(jnp.where(keep, logits, -jnp.inf), -1, keepdims=True))
    return peak[..., 0] + jnp.log(jnp.sum(jnp.exp(jnp.where(keep, logits - peak, -jnp.inf)), -1))


def _reference_loss(kind, features, d):
    """The loss from the definitions, one dense candidate list per anchor (jax, float64, autodiff).

    Padded examples are dropped first, so they take part in nothing and get zero gradient.
    """
    keep_examples = np.flatnonzero(d["valid"])
    per_example = ("group", "domain", "positive_group", "hard_valid", "weights", "teacher_image", "teacher_text")
    d = {**d, **{name: d[name][keep_examples] for name in per_example}, "valid": np.ones(len(keep_examples), bool)}

    def loss(args):
        args = {**args, **{name: args[name][keep_examples] for name in ("image", "text", "hard")}}
        image, scale = args["image"], jnp.exp(args["logit_scale"])
        text = args["text"] if args["text"].ndim == 3 else args["text"][:, None]
        n, k = text.shape[:2]
        flat = text.reshape(n * k, -1)
        ids = d["positive_group"] if "positive_group" in features else np.arange(n)
        valid = d["valid"]
        col_of = np.repeat(np.arange(n), k)  # example of each text column
        logits = scale * image @ flat.T  # [n, n k]
        pair_valid = valid[:, None] & valid[col_of][None, :]
        positive = pair_valid & (ids[:, None] == ids[col_of][None, :])
        negative = pair_valid & ~positive
        if "group" in features:
            negative &= d["group"][:, None] != d["group"][col_of][None, :]
        if "domain" in features:
            negative &= d["domain"][:, None] == d["domain"][col_of][None, :]
        cosine = jax.lax.stop_gradient(jnp.einsum("nd,nkd->nk", image, text))
        big = jnp.inf if "margin" not in features else None
        row_limit = big if big else jax.lax.stop_gradient(scale) * (cosine.mean(1) + MARGIN)
        col_limit = big if big else jax.lax.stop_gradient(scale) * (cosine.reshape(-1) + MARGIN)
        row_keep = positive | (negative & (logits <= (row_limit if big else row_limit[:, None])))
        col_keep = positive | (negative & (logits <= (col_limit if big else col_limit[None, :])))
        # extra candidates: [n, H + Q] for the image rows, [n k, Q] for the text columns
        row_extra, row_extra_keep = jnp.zeros((n, 0)), np.zeros((n, 0), bool)
        col_extra, col_extra_keep = jnp.zeros((n * k, 0)), np.zeros((n * k, 0), bool)
        if "hard" in features:
            row_extra = jnp.concatenate([row_extra, scale * jnp.einsum("nd,nhd->nh", image, args["hard"])], 1)
            row_extra_keep = np.concatenate([row_extra_keep, valid[:, None] & d["hard_valid"]], 1)
        if "text_bank" in features:
            row_extra = jnp.concatenate([row_extra, scale * image @ args["text_bank"].T], 1)
            bank_keep = valid[:, None] & d["text_bank_valid"][None, :]
            if "group" in features:
                bank_keep = bank_keep & (d["group"][:, None] != d["text_bank_group"][None, :])
            row_extra_keep = np.concatenate([row_extra_keep, bank_keep], 1)
        if "image_bank" in features:
            col_extra = scale * flat @ args["image_bank"].T
            col_extra_keep = np.broadcast_to(valid[col_of][:, None], col_extra.shape)
        if "margin" in features:
            row_extra_keep = row_extra_keep & (row_extra <= row_limit[:, None])
            col_extra_keep = col_extra_keep & (col_extra <= col_limit[:, None])
        if kind == "sigmoid":
            bias = args["logit_bias"]
            sign = jnp.where(positive, 1.0, -1.0)
            per_pair = jnp.where(row_keep, jax.nn.softplus(-sign * (logits + bias)), 0.0)
            extra = jnp.sum(jnp.where(row_extra_keep, jax.nn.softplus(row_extra + bias), 0.0), 1)
            text_extra = jnp.sum(jnp.where(col_extra_keep, jax.nn.softplus(col_extra + bias), 0.0), 1)
            per_example = per_pair.sum(1) + extra + text_extra.reshape(n, k).sum(1)
        else:
            rows = jnp.concatenate([logits, row_extra], 1)
            cols = jnp.concatenate([logits.T, col_extra], 1)
            row_lse = _logsumexp(rows, jnp.concatenate([row_keep, row_extra_keep], 1))
            col_lse = _logsumexp(cols, jnp.concatenate([col_keep.T, col_extra_keep], 1))
            row_target = jnp.sum(jnp.where(positive, logits, 0.0), 1) / np.maximum(positive.sum(1), 1)
            col_target = jnp.sum(jnp.where(positive, logits, 0.0), 0) / np.maximum(positive.sum(0), 1)
            if "soft" in features:
                teacher = np.exp(TEACHER_SCALE) * d["teacher_image"] @ d["teacher_text"].T
                row_q = jax.nn.softmax(jnp.where(row_keep, teacher, -jnp.inf), 1)
                col_q = jax.nn.softmax(jnp.where(col_keep, teacher, -jnp.inf), 0)
                row_target = ALPHA * row_target + (1 - ALPHA) * jnp.sum(jnp.where(row_keep, row_q * logits, 0.0), 1)
                col_target = ALPHA * col_target + (1 - ALPHA) * jnp.sum(jnp.where(col_keep, col_q * logits, 0.0), 0)
            row_term = row_lse - row_target
            text_term = (col_lse - col_target).reshape(n, k).mean(1)
            per_example = row_term if "image_to_text" in features else 0.5 * (row_term + text_term)
        weights = d["weights"] if "weights" in features else np.ones(n)
        return jnp.sum(weights * per_example) / np.sum(weights)

    return loss


@functools.cache
def _reference(case):
    kind, features, multiple = CASES[case]
    d = _data()
    with float64():
        value, grads = jax.jit(jax.value_and_grad(_reference_loss(kind, features, d)))(_inputs(d, multiple))
        return float(value), jax.tree.map(np.asarray, grads)


def _assert_close(actual, expected, rtol=1e-7):
    expected = np.asarray(expected)
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=rtol, atol=rtol * max(np.abs(expected).max(), 1e-3))


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", CASES)
def test_feature_matches_the_dense_float64_reference(case, implementation):
    kind, features, multiple = CASES[case]
    d = _data()
    ref_value, ref_grads = _reference(case)
    with float64():
        loss = _loss_under_test(kind, features, implementation, MESHES["data8"], d)
        value, grads = jax.jit(jax.value_and_grad(loss))(_inputs(d, multiple))
    _assert_close(value, ref_value)
    for name in DIFFERENTIABLE:
        _assert_close(grads[name], ref_grads[name])


@pytest.mark.parametrize("implementation", ["gathered", "ring", "ring_tiled"])
def test_features_on_a_data_and_fsdp_mesh(implementation):
    kind, features, multiple = CASES["masks_weights_extras"]
    d = _data()
    ref_value, ref_grads = _reference("masks_weights_extras")
    with float64():
        loss = _loss_under_test(kind, features, implementation, MESHES["data4_fsdp2"], d)
        value, grads = jax.jit(jax.value_and_grad(loss))(_inputs(d, multiple))
    _assert_close(value, ref_value)
    _assert_close(grads["image"], ref_grads["image"])
    _assert_close(grads["text"], ref_grads["text"])


def test_unsupported_combinations_raise_naming_the_fix():
    assert SUPPORTED["soft_targets"]["sigmoid"] == ()
    embeddings = jnp.ones((8, DIM))
    teacher = SoftTargets(embeddings, embeddings, jnp.float32(0.0))
    with pytest.raises(ValueError, match="kind='softmax'"):
        contrastive_loss(
            embeddings, embeddings, jnp.float32(0.0), jnp.float32(0.0), kind="sigmoid", soft_targets=teacher
        )
    with pytest.raises(ValueError, match="in-batch candidates only"):
        contrastive_loss(
            embeddings, embeddings, jnp.float32(0.0), soft_targets=teacher, text_bank=NegativeBank(embeddings)
        )
