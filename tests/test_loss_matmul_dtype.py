"""config.loss.matmul_dtype="bfloat16": every implementation that offers it computes the loss of the
bf16-rounded operands exactly (float32 sums), and its gradients to bf16 accuracy, against float64 NumPy."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from contrastive_reference import reference, unit_rows
from jax.sharding import Mesh

from losses.contrastive import LOW_PRECISION_IMPLEMENTATIONS, contrastive_loss

if jax.device_count() < 8:
    pytest.skip("needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8", allow_module_level=True)
MESH = Mesh(np.asarray(jax.devices()[:8]), ("data",))
LOGIT_SCALE = np.float32(np.log(30.0))
BIAS = np.float32(-5.0)


@functools.cache
def _value_and_grad(kind, implementation, matmul_dtype):
    def loss(image, text, logit_scale):
        bias = BIAS if kind == "sigmoid" else None
        # The fused kernels' blocks are powers of two, and they take the whole batch on one device.
        tile, mesh = (16, None) if implementation == "fused" else (5, MESH)
        options = dict(kind=kind, implementation=implementation, tile_size=tile, mesh=mesh, matmul_dtype=matmul_dtype)
        return contrastive_loss(image, text, logit_scale, bias, **options)[0]

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def _bf16(a):
    return np.asarray(a, np.float32).astype(ml_dtypes.bfloat16).astype(np.float64)


def _inputs():
    # 56 rows, 7 per device, tile 5: no size divides another, so the tiles are padded.
    rng = np.random.default_rng(3)
    image = np.float32(unit_rows(rng.normal(size=(56, 48))))
    text = np.float32(unit_rows(image + 0.8 * rng.normal(size=image.shape)))
    return image, text


@pytest.mark.parametrize(
    "kind,implementation",
    [("softmax", name) for name in LOW_PRECISION_IMPLEMENTATIONS]
    + [("sigmoid", "dense"), ("sigmoid", "ring_tiled"), ("sigmoid", "fused")],
)
def test_bfloat16_matmuls_are_the_float64_loss_of_the_rounded_operands(kind, implementation):
    image, text = _inputs()
    # The rows are scaled before rounding (the scale as jax rounds it), the columns rounded as they are.
    scale = float(jnp.exp(LOGIT_SCALE))
    rounded_image, rounded_text = _bf16(np.float32(scale) * image) / scale, _bf16(text)
    exact = reference(kind, image, text, np.log(scale), BIAS)
    rounded = reference(kind, rounded_image, rounded_text, np.log(scale), BIAS)
    loss, (d_image, d_text) = _value_and_grad(kind, implementation, "bfloat16")(image, text, LOGIT_SCALE)
    # Exact products of bf16 numbers summed in float32: the rounded operands' loss to float32 accuracy,
    # while rounding them moved the loss by far more (the test would fail if nothing were rounded).
    assert abs(float(loss) - rounded.loss) <= 2e-6 * abs(rounded.loss)
    assert abs(rounded.loss - exact.loss) >= 50 * 2e-6 * abs(rounded.loss)
    # The gradients' matmuls take the logits' gradient rounded to bf16 (relative 2^-9 per element): 2e-3
    # to 3e-3 of the largest entry here, against errors of order 1 for a wrong gradient.
    for grad, want in ((d_image, rounded.d_image), (d_text, rounded.d_text)):
        assert np.max(np.abs(np.asarray(grad, np.float64) - want)) <= 8e-3 * np.max(np.abs(want))


def test_float32_is_the_unrounded_loss():
    image, text = _inputs()
    exact = reference("softmax", image, text, LOGIT_SCALE)
    loss, _ = _value_and_grad("softmax", "tiled", "float32")(image, text, LOGIT_SCALE)
    assert abs(float(loss) - exact.loss) <= 2e-6 * abs(exact.loss)


@pytest.mark.parametrize(
    "options,fragment",
    [
        (dict(matmul_dtype="float16"), "Unknown loss matmul dtype 'float16'; set config.loss.matmul_dtype to one of"),
        (
            dict(matmul_dtype="bfloat16", implementation="gathered"),
            "matmul_dtype='bfloat16' is not available with implementation='gathered'; use one of",
        ),
    ],
)
def test_unavailable_matmul_dtypes_are_refused_naming_the_fix(options, fragment):
    image, text = _inputs()
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace("[", r"\[")):
        contrastive_loss(image, text, LOGIT_SCALE, mesh=MESH, **options)
