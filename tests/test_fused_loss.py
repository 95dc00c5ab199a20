"""The fused Pallas kernels (losses/fused.py, implementation="fused") against float64 NumPy references.

On the CPU the kernels run in Pallas' interpret mode: the same kernel code as on a GPU, executed by XLA.
Sizes are small and never multiples of the block, so the padding and the last partial block are exercised.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from contrastive_reference import float64, reference, unit_rows

from configs import clip, degla
from configs.errors import ConfigError
from losses.contrastive import contrastive_loss
from training.validation import validate_config

BLOCK = 16


def _loss_and_grads(kind, image, text, logit_scale, logit_bias=0.0, block=BLOCK, **options):
    def loss(image, text, logit_scale, logit_bias):
        bias = logit_bias if kind == "sigmoid" else None
        return contrastive_loss(image, text, logit_scale, bias, kind=kind, tile_size=block, **options)

    args = [jnp.asarray(a) for a in (image, text, logit_scale, logit_bias)]
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True))(*args)


def _pairs(rng, batch, dim, noise=0.7):
    image = unit_rows(rng.normal(size=(batch, dim)))
    return image, unit_rows(image + noise * rng.normal(size=image.shape))


@pytest.mark.parametrize("kind, width", [("softmax", 24), ("sigmoid", 24), ("softmax", 70), ("sigmoid", 70)])
def test_fused_loss_and_gradients_are_the_float64_references(kind, width):
    # 37 rows of which 33 valid, block 16: three row blocks, the last one mostly padding. Width 70: three chunks
    # of the features (fused.CHUNK), the last one mostly padding.
    rng = np.random.default_rng(0)
    image, text = _pairs(rng, 37, width)
    valid = np.arange(37) < 33
    logit_scale, logit_bias = np.log(30.0), -4.0
    ref = reference(kind, image, text, logit_scale, logit_bias, valid)
    with float64():
        (loss, metrics), grads = _loss_and_grads(
            kind, image, text, logit_scale, logit_bias, implementation="fused", valid=valid
        )
        assert loss.dtype == jnp.float64
    assert abs(float(loss) - ref.loss) <= 1e-12 * max(1.0, ref.loss)
    np.testing.assert_allclose(grads[0], ref.d_image, atol=1e-13)
    np.testing.assert_allclose(grads[1], ref.d_text, atol=1e-13)
    assert abs(float(grads[2]) - ref.d_logit_scale) <= 1e-12
    assert abs(float(grads[3]) - ref.d_logit_bias) <= 1e-12
    if kind == "softmax":
        assert float(metrics["i2t_accuracy"]) == pytest.approx(ref.i2t_accuracy)
        assert float(metrics["t2i_accuracy"]) == pytest.approx(ref.t2i_accuracy)
        assert 0.0 < ref.i2t_accuracy < 1.0  # the accuracies are informative at this noise level


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
def test_fused_float32_is_as_accurate_as_dense(kind):
    rng = np.random.default_rng(1)
    image, text = (np.float32(a) for a in _pairs(rng, 50, 32))
    logit_scale, logit_bias = np.float32(np.log(100.0)), np.float32(-10.0)
    ref = reference(kind, np.float64(image), np.float64(text), np.float64(logit_scale), np.float64(logit_bias))
    errors = {}
    for implementation in ("dense", "fused"):
        (loss, _), grads = _loss_and_grads(kind, image, text, logit_scale, logit_bias, implementation=implementation)
        errors[implementation] = (
            abs(float(loss) - ref.loss) / ref.loss,
            np.abs(grads[0] - ref.d_image).max() / np.abs(ref.d_image).max(),
            np.abs(grads[1] - ref.d_text).max() / np.abs(ref.d_text).max(),
        )
    # Float32 rounding of the same computation: both within a few ulps of float64, neither far worse.
    for fused_error, dense_error in zip(errors["fused"], errors["dense"], strict=True):
        assert fused_error <= max(4 * dense_error, 1e-6), errors


def test_converged_fused_softmax_loss_is_never_negative():
    # Each image's caption is itself at scale 100: the exact loss is ~1e-20; the log-sum-exp and the
    # positive come from the same rounded logits, so float32 gives 0, not a rounding residue of either sign.
    image = np.float32(unit_rows(np.random.default_rng(2).normal(size=(40, 32))))
    (loss, metrics), _ = _loss_and_grads("softmax", image, image, np.float32(np.log(100.0)), implementation="fused")
    assert 0.0 <= float(loss) <= 1e-12
    assert float(metrics["i2t_accuracy"]) == float(metrics["t2i_accuracy"]) == 1.0


def _several_positives_reference(image, texts, scale, group):
    """DreamLIP-style loss in float64: image i's positives are the K texts of every example of its group;
    its term is lse over all texts minus their mean logit; each text's term is lse over images minus the
    mean over its positive images; an example's loss is 1/2 (image term + mean over its texts)."""
    batch, per_example, _ = texts.shape
    flat = texts.reshape(batch * per_example, -1)
    text_group = np.repeat(group, per_example)
    logits = scale * image @ flat.T  # [B, B K]
    positive = group[:, None] == text_group[None, :]
    row = np.log(np.exp(logits).sum(1)) - (logits * positive).sum(1) / positive.sum(1)
    col = np.log(np.exp(logits).sum(0)) - (logits * positive).sum(0) / positive.sum(0)
    return np.mean(0.5 * (row + col.reshape(batch, per_example).mean(1)))


@pytest.mark.parametrize("grouped", [False, True])
def test_fused_several_positives_match_the_reference_and_dense(grouped):
    rng = np.random.default_rng(3)
    image = unit_rows(rng.normal(size=(21, 16)))
    texts = unit_rows(image[:, None] + 0.8 * rng.normal(size=(21, 3, 16)))
    group = np.arange(21) // 2 if grouped else np.arange(21)
    options = {"positive_group": jnp.asarray(group)} if grouped else {}
    with float64():
        results = {
            implementation: _loss_and_grads(
                "softmax", image, texts, np.log(20.0), implementation=implementation, **options
            )  # fmt: skip
            for implementation in ("dense", "fused")
        }
    want = _several_positives_reference(image, texts, 20.0, group)
    (loss, metrics), grads = results["fused"]
    (_, dense_metrics), dense_grads = results["dense"]
    assert abs(float(loss) - want) <= 1e-12
    for got, expected in zip(grads, dense_grads, strict=True):
        np.testing.assert_allclose(got, expected, atol=1e-13)
    assert {k: float(v) for k, v in metrics.items()} == {k: float(v) for k, v in dense_metrics.items()}


def test_fused_bfloat16_operands_match_dense_with_the_same_rounding():
    # matmul_dtype="bfloat16" rounds s x and y to bf16 once in both: the logits are the same products.
    rng = np.random.default_rng(4)
    image, text = (np.float32(a) for a in _pairs(rng, 40, 32))
    results = {
        implementation: _loss_and_grads(
            "softmax", image, text, np.float32(np.log(50.0)), implementation=implementation, matmul_dtype="bfloat16"
        )
        for implementation in ("dense", "fused")
    }
    (loss, _), grads = results["fused"]
    (want_loss, _), want_grads = results["dense"]
    ref = reference("softmax", np.float64(image), np.float64(text), np.log(50.0))
    assert abs(float(loss) - float(want_loss)) <= 1e-5 * float(want_loss)
    assert abs(float(loss) - ref.loss) > 1e-5 * ref.loss  # bf16 operands do change the value
    for got, want in zip(grads[:3], want_grads[:3], strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-2, atol=2e-2 * float(np.abs(want).max()))


def test_fused_refuses_what_it_does_not_compute_in_one_sentence():
    image, text = _pairs(np.random.default_rng(5), 8, 8)
    with pytest.raises(ValueError, match=r"group is not available .* implementation='fused'; use implementation one"):
        contrastive_loss(image, text, 0.0, implementation="fused", group=np.zeros(8, int))
    with pytest.raises(ValueError, match="tile_size=48 is not a power of two"):
        contrastive_loss(image, text, 0.0, implementation="fused", tile_size=48)


def test_config_check_refuses_fused_where_it_cannot_run_before_jax_starts():
    config = clip.get_config()
    config.loss.implementation = "fused"
    validate_config(config)
    config.loss.tile_size = 48
    with pytest.raises(ConfigError, match=r"config.loss.tile_size=48 is not a power of two"):
        validate_config(config)
    config = degla.get_config()
    config.loss.implementation = "fused"
    with pytest.raises(ValueError, match=r"implementation='fused' is not supported by objective 'degla'"):
        validate_config(config)


def test_fused_refuses_a_mesh_that_splits_the_batch():
    image, text = _pairs(np.random.default_rng(6), 16, 8)
    one = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("data",))
    with jax.set_mesh(one):
        loss, _ = contrastive_loss(image, text, 0.0, implementation="fused")
    assert np.isfinite(float(loss))
    if jax.device_count() < 2:
        pytest.skip("needs 2 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8")
    two = jax.sharding.Mesh(np.asarray(jax.devices()[:2]), ("data",))
    with (
        jax.set_mesh(two),
        pytest.raises(ValueError, match=r"runs on one device, but the mesh splits the batch over 2"),
    ):
        contrastive_loss(image, text, 0.0, implementation="fused")


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
def test_fused_keeps_float32_inputs_float32_under_x64(kind):
    # Python constants are float64 under jax_enable_x64: the kernels' carries must stay in the inputs' dtype.
    image, text = (np.float32(a) for a in _pairs(np.random.default_rng(7), 20, 16))
    scalars = np.float32(np.log(10.0)), np.float32(-2.0)
    with float64():
        results = {
            implementation: _loss_and_grads(kind, image, text, *scalars, implementation=implementation)
            for implementation in ("dense", "fused")
        }
    (loss, _), grads = results["fused"]
    (want, _), want_grads = results["dense"]
    assert loss.dtype == jnp.float32 and grads[0].dtype == jnp.float32
    assert abs(float(loss) - float(want)) <= 1e-6 * abs(float(want))
    np.testing.assert_allclose(grads[0], want_grads[0], atol=1e-6)
