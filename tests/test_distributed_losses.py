"""Every contrastive-loss implementation against the float64 NumPy reference, on 8 fake devices."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from contrastive_reference import float64, reference, unit_rows
from jax.sharding import Mesh

from losses.contrastive import IMPLEMENTATIONS, KINDS, contrastive_loss, resolve_tile_size

BATCH, DIM, TILE = 40, 8, 3  # 40 = 8 devices x 5 rows; neither 40 nor 5 is a multiple of the tile

if jax.device_count() < 8:
    pytest.skip("needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8", allow_module_level=True)
MESH = Mesh(np.asarray(jax.devices()[:8]), ("data",))


def _case(name: str):
    """(image, text, logit_scale, logit_bias, valid) in float64 NumPy."""
    rng = np.random.default_rng(0)
    image = unit_rows(rng.normal(size=(BATCH, DIM)))
    valid = np.ones(BATCH, bool)
    if name == "random":
        return image, unit_rows(rng.normal(size=(BATCH, DIM))), np.log(10.0), -10.0, valid
    if name == "padded":
        text = unit_rows(image + 0.7 * rng.normal(size=(BATCH, DIM)))
        valid[rng.permutation(BATCH)[:13]] = False
        valid[:5] = False  # all rows of device 0 are padding
        return image, text, np.log(30.0), -3.0, valid
    # Scale 100 and nearly identical embeddings: logits within 1e-3 of each other, all near 100.
    base = rng.normal(size=(1, DIM))
    image = unit_rows(base + 1e-5 * rng.normal(size=(BATCH, DIM)))
    text = unit_rows(base + 1e-5 * rng.normal(size=(BATCH, DIM)))
    return image, text, np.log(100.0), -10.0, valid


CASES = ("random", "padded", "extreme")


@functools.cache
def _value_and_grad(kind: str, implementation: str):
    def loss(image, text, logit_scale, logit_bias, valid):
        return contrastive_loss(
            image,
            text,
            logit_scale,
            logit_bias if kind == "sigmoid" else None,
            kind=kind,
            implementation=implementation,
            tile_size=TILE,
            mesh=MESH,
            valid=valid,
        )

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True))


def _assert_close(actual, expected, rtol=1e-5):
    expected = np.asarray(expected)
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=rtol, atol=rtol * max(np.abs(expected).max(), 1e-3))


def _central_difference(kind, args, which, bump, step=1e-6):
    """d loss / d args[which] along `bump`, from the reference loss alone."""
    shifted = lambda h: [a + h * bump if i == which else a for i, a in enumerate(args)]  # noqa: E731
    return (reference(kind, *shifted(step)).loss - reference(kind, *shifted(-step)).loss) / (2 * step)


@pytest.mark.parametrize("kind", KINDS)
def test_reference_gradients_match_finite_differences(kind):
    image, text, logit_scale, logit_bias, _ = _case("padded")
    args = (image[:6], text[:6], logit_scale, logit_bias)
    ref = reference(kind, *args)
    entry = np.zeros_like(args[0])
    entry[2, 3] = 1.0
    np.testing.assert_allclose(
        [ref.d_image[2, 3], ref.d_text[2, 3], ref.d_logit_scale, ref.d_logit_bias],
        [_central_difference(kind, args, which, bump) for which, bump in enumerate([entry, entry, 1.0, 1.0])],
        rtol=1e-6,
        atol=1e-8,
    )


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_loss_and_gradients_match_reference(kind, implementation, case):
    image, text, logit_scale, logit_bias, valid = _case(case)
    ref = reference(kind, image, text, logit_scale, logit_bias, valid)
    with float64():
        args = (jnp.asarray(image), jnp.asarray(text), jnp.float64(logit_scale), jnp.float64(logit_bias))
        (loss, metrics), grads = _value_and_grad(kind, implementation)(*args, jnp.asarray(valid))
    assert all(np.isfinite(g).all() for g in grads)
    _assert_close(loss, ref.loss)
    _assert_close(grads[0], ref.d_image)
    _assert_close(grads[1], ref.d_text)
    _assert_close(grads[2], ref.d_logit_scale)
    if kind == "sigmoid":
        _assert_close(grads[3], ref.d_logit_bias)
    else:
        assert float(metrics["i2t_accuracy"]) == pytest.approx(ref.i2t_accuracy)
        assert float(metrics["t2i_accuracy"]) == pytest.approx(ref.t2i_accuracy)


@pytest.mark.parametrize("kind", KINDS)
def test_float32_tiled_loss_is_close_to_float64_reference(kind):
    # ENVIRONMENT.md: fp32 gradients of the scale drift ~1e-5 relative from float64 at d = 512.
    rng = np.random.default_rng(1)
    image = unit_rows(rng.normal(size=(256, 64)))
    text = unit_rows(image + 0.5 * rng.normal(size=(256, 64)))
    ref = reference(kind, image, text, np.log(100.0), -10.0)

    def loss(image, text, logit_scale, logit_bias):
        bias = logit_bias if kind == "sigmoid" else None
        return contrastive_loss(image, text, logit_scale, bias, kind=kind, implementation="tiled", tile_size=96)[0]

    args = (jnp.float32(image), jnp.float32(text), jnp.float32(np.log(100.0)), jnp.float32(-10.0))
    value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(*args)
    _assert_close(value, ref.loss, rtol=1e-5)
    _assert_close(grads[0], ref.d_image, rtol=1e-4)
    _assert_close(grads[1], ref.d_text, rtol=1e-4)
    _assert_close(grads[2], ref.d_logit_scale, rtol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_tiled_temporaries_stay_linear_in_the_batch(kind):
    # The point of `tiled`: no [B, B] buffer (1 GiB here). Its forward + backward must stay within
    # three B x d embedding matrices plus a few tiles, by XLA's own memory analysis (compile only).
    batch, dim, tile = 16384, 64, 256

    def loss(image, text, logit_scale, logit_bias):
        bias = logit_bias if kind == "sigmoid" else None
        return contrastive_loss(image, text, logit_scale, bias, kind=kind, implementation="tiled", tile_size=tile)[0]

    embedding, scalar = jax.ShapeDtypeStruct((batch, dim), jnp.float32), jax.ShapeDtypeStruct((), jnp.float32)
    compiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3))).lower(embedding, embedding, scalar, scalar).compile()
    assert compiled.memory_analysis().temp_size_in_bytes <= 3 * batch * dim * 4 + 8 * tile * tile * 4


@pytest.mark.parametrize("kind", KINDS)
def test_tile_size_0_traces_the_backends_edge(kind):
    # 0 (the config default) is resolved while tracing: on this CPU the program is the one of tile 512
    # (an explicit edge stays as given), on a GPU the one of 4,096 (issue 23's H200 measurements).
    image = unit_rows(np.random.default_rng(2).normal(size=(1100, 16))).astype(np.float32)

    def program(tile):
        loss = functools.partial(contrastive_loss, kind=kind, implementation="tiled", tile_size=tile)
        args = (image, image, jnp.float32(2.0)) + ((jnp.float32(-3.0),) if kind == "sigmoid" else ())
        return str(jax.make_jaxpr(jax.grad(lambda *a: loss(*a)[0]))(*args))

    assert jax.default_backend() == "cpu"
    assert program(0) == program(512) != program(256)
    edges = [resolve_tile_size(0, "cuda"), resolve_tile_size(0, "tpu"), resolve_tile_size(96, "cuda")]
    assert edges == [4096, 4096, 96]


def test_mesh_comes_from_the_set_mesh_context():
    image, text, logit_scale, _, _ = _case("random")
    ref = reference("softmax", image, text, logit_scale)
    with float64(), jax.set_mesh(MESH):
        loss, _ = jax.jit(functools.partial(contrastive_loss, implementation="ring"))(
            jnp.asarray(image), jnp.asarray(text), jnp.float64(logit_scale)
        )
    _assert_close(loss, ref.loss)


@pytest.mark.parametrize("implementation", ["gathered", "ring", "ring_tiled"])
def test_a_distributed_implementation_without_a_mesh_names_the_fix(implementation):
    embeddings = jnp.ones((BATCH, DIM))
    with pytest.raises(ValueError, match=r"need a device mesh; call the loss under jax.set_mesh\(mesh\)"):
        contrastive_loss(embeddings, embeddings, jnp.float32(0.0), implementation=implementation)


@pytest.mark.parametrize(
    "kwargs, batch, message",
    [
        (dict(implementation="ring"), 36, "multiple of the 8 devices"),
        (dict(implementation="sharded"), 40, "config.loss.implementation"),
        (
            dict(implementation="tiled", tile_size=-1),
            40,
            r"tile_size must be a positive integer \(or 0 for the backend",
        ),
        (dict(kind="sigmoid"), 40, "needs logit_bias"),
    ],
)
def test_bad_options_raise_a_clear_error(kwargs, batch, message):
    embeddings = jnp.ones((batch, DIM))
    with pytest.raises(ValueError, match=message):
        contrastive_loss(embeddings, embeddings, jnp.float32(0.0), mesh=MESH, **kwargs)
