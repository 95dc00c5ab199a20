"""uint8 batches are normalised on the device by the train step, bit-identically to the host."""

import jax
import numpy as np
import tiny_training

from input_pipeline import transforms
from training.mesh import make_mesh
from training.train_step import normalize_pixels

# CLIP's published constants, written out here so the test does not read them from the code under test.
MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
STD = np.array([0.26862954, 0.26130258, 0.27577711])


def test_every_pixel_value_maps_to_the_host_normalisation():
    values = np.arange(256, dtype=np.uint8)[:, None].repeat(3, axis=1)  # [256, 3]: every value, per channel
    got = np.asarray(jax.jit(normalize_pixels)(values))
    assert got.dtype == np.float32
    assert np.array_equal(got, transforms.normalize_image(values))  # bit for bit, not just close
    np.testing.assert_allclose(got, (values / 255.0 - MEAN) / STD, rtol=0, atol=1e-6)  # float64 closed form


def test_a_uint8_batch_trains_exactly_like_the_same_batch_normalised_on_the_host():
    config = tiny_training.tiny_config()
    mesh = make_mesh({"data": 1}, jax.devices()[:1])
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(2, config.batch_size, 16, 16, 3), dtype=np.uint8)
    text = tiny_training.batch(config)["text"]
    as_uint8 = [{"image": p, "text": text} for p in pixels]
    on_host = [{"image": transforms.normalize_image(p), "text": text} for p in pixels]
    params_uint8, metrics_uint8 = tiny_training.run_steps(config, mesh, as_uint8)
    params_host, metrics_host = tiny_training.run_steps(config, mesh, on_host)
    assert [m["loss"] for m in metrics_uint8] == [m["loss"] for m in metrics_host]
    tiny_training.assert_same_params(params_uint8, params_host, atol=0)
