"""float32 numerics of every implementation against float64: a converged batch, and a cancelling scale gradient."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from contrastive_reference import reference, unit_rows
from jax.sharding import Mesh

from losses.contrastive import IMPLEMENTATIONS, contrastive_loss

if jax.device_count() < 8:
    pytest.skip("needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8", allow_module_level=True)
MESH = Mesh(np.asarray(jax.devices()[:8]), ("data",))


@functools.cache
def _value_and_grad(kind, implementation, tile):
    def loss(image, text, logit_scale, logit_bias):
        bias = logit_bias if kind == "sigmoid" else None
        options = dict(kind=kind, implementation=implementation, tile_size=tile, mesh=MESH)
        return contrastive_loss(image, text, logit_scale, bias, **options)[0]

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))


def _float32(*arrays):
    """The float32 inputs, and the same numbers in float64 for the reference."""
    single = [np.float32(a) for a in arrays]
    return single, [np.float64(a) for a in single]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_converged_softmax_loss_is_exactly_the_float64_one(implementation):
    # Each image's only caption is itself at scale 100: the exact loss is ~1e-20. The log-sum-exp and
    # the positive logit must come from the same rounded logits, or their ~1e-5 rounding residue
    # (of either sign) is the loss. 104 rows, 13 per device, tile 5: no size divides another.
    rng = np.random.default_rng(0)
    (image, logit_scale), (image64, logit_scale64) = _float32(unit_rows(rng.normal(size=(104, 32))), np.log(100.0))
    ref = reference("softmax", image64, image64, logit_scale64)
    loss, grads = _value_and_grad("softmax", implementation, 5)(image, image, logit_scale, np.float32(0.0))
    assert float(loss) >= 0.0
    assert abs(float(loss) - ref.loss) <= 1e-12
    np.testing.assert_allclose(grads[0], ref.d_image, atol=1e-12)
    np.testing.assert_allclose(grads[1], ref.d_text, atol=1e-12)
    assert abs(float(grads[2]) - ref.d_logit_scale) <= 1e-12


def _abs_scale_terms(kind, image, text, logit_scale, logit_bias):
    """sum_ij |d loss / d logit_ij * logit_ij| in float64: the size of what d loss / d logit_scale sums."""
    logits = np.exp(logit_scale) * image @ text.T
    eye = np.eye(len(image))
    if kind == "sigmoid":
        sign = 2.0 * eye - 1.0
        d_logits = -sign / (1.0 + np.exp(sign * (logits + logit_bias)))
    else:
        shifted = np.exp(logits - logits.max(1, keepdims=True)), np.exp(logits - logits.max(0, keepdims=True))
        d_logits = 0.5 * (shifted[0] / shifted[0].sum(1, keepdims=True) + shifted[1] / shifted[1].sum(0)) - eye
    return np.abs(d_logits * logits).sum() / len(image)


# Points where d loss / d logit_scale nearly cancels (found by root finding on the reference, then offset):
# the sum is ~1e-4 of the size of its terms, so a float32 running sum over tiles shows its error.
CANCELLING = {"sigmoid": (np.log(10.0), -8.6354), "softmax": (2.79472, 0.0)}


@pytest.mark.parametrize("kind", ["sigmoid", "softmax"])
def test_tiled_scale_gradient_is_as_accurate_as_dense_where_it_cancels(kind):
    # Measured (benchmarks in the report): the error of both, over the sum of |terms|, is <= 4e-8;
    # before compensated summation and shifted softmax terms the tiled softmax reached 4e-7.
    rng = np.random.default_rng(0)
    image = unit_rows(rng.normal(size=(4096, 64)))
    text = unit_rows(image + 0.5 * rng.normal(size=image.shape))
    (image, text, logit_scale, logit_bias), f64 = _float32(image, text, *CANCELLING[kind])
    ref = reference(kind, *f64).d_logit_scale
    size = _abs_scale_terms(kind, *f64)
    assert abs(ref) < 1e-3 * size  # the point does cancel
    for implementation in ("dense", "tiled"):
        _, grads = _value_and_grad(kind, implementation, 512)(image, text, logit_scale, logit_bias)
        assert abs(float(grads[2]) - ref) <= 1e-7 * size, implementation
