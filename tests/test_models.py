import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from models.text_transformer import TextTransformer
from models.two_tower import TwoTower
from models.vit import VisionTransformer


def _init_apply(module, *inputs):
    params = module.init(jax.random.PRNGKey(0), *inputs)
    return params, module.apply(params, *inputs)


def test_vit_shapes_with_conv_stem_and_cls_pooling():
    vit = VisionTransformer(width=32, depth=2, heads=2, patch_size=8, conv_stem_depth=3)
    _, (pooled, tokens) = _init_apply(vit, jnp.zeros((3, 32, 32, 3)))
    assert pooled.shape == (3, 32) and tokens.shape == (3, 16, 32)


def test_vit_linear_patchify_and_gap():
    vit = VisionTransformer(width=24, depth=1, heads=2, patch_size=16, pool="gap")
    _, (pooled, tokens) = _init_apply(vit, jnp.zeros((2, 64, 48, 3)))
    assert pooled.shape == (2, 24) and tokens.shape == (2, 12, 24)
    np.testing.assert_allclose(pooled, tokens.mean(axis=1), atol=1e-6)


def test_text_tower_pools_at_end_of_text_and_ignores_padding():
    text = TextTransformer(vocab_size=50, width=32, depth=2, heads=2, max_len=8)
    tokens = jnp.array([[2, 10, 11, 3, 0, 0, 0, 0], [2, 10, 11, 3, 7, 9, 0, 0]])
    params, (pooled, states) = _init_apply(text, tokens)
    assert pooled.shape == (2, 32) and states.shape == (2, 8, 32)
    np.testing.assert_allclose(pooled[0], states[0, 3], atol=1e-6)  # EOS of row 0 is position 3
    np.testing.assert_allclose(pooled[1], states[1, 5], atol=1e-6)
    # Causal attention: what follows the EOS (here padding) cannot change the pooled vector.
    other_padding = tokens.at[0, 4:].set(1)
    np.testing.assert_allclose(text.apply(params, other_padding)[1][0, 3], states[0, 3], atol=1e-5)


def test_two_tower_outputs_are_normalised_with_clip_temperature():
    model = TwoTower(
        image=ml_collections.ConfigDict(dict(width=32, depth=1, heads=2, patch_size=8, conv_stem_depth=1)),
        text=ml_collections.ConfigDict(dict(width=32, depth=1, heads=2, max_len=8)),
        embed_dim=16,
        vocab_size=40,
        logit_scale_init=float(np.log(1 / 0.07)),
    )
    images, tokens = jnp.zeros((4, 16, 16, 3)), jnp.ones((4, 8), jnp.int32)
    params, out = _init_apply(model, images, tokens)
    assert out["image_embedding"].shape == (4, 16) and out["text_embedding"].shape == (4, 16)
    np.testing.assert_allclose(np.linalg.norm(out["image_embedding"], axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out["text_embedding"], axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.exp(out["logit_scale"]), 1 / 0.07, rtol=1e-6)
    assert params["params"]["logit_scale"].dtype == jnp.float32
    image_only = model.apply(params, images, method=model.encode_image)
    np.testing.assert_allclose(image_only["image_embedding"], out["image_embedding"], atol=1e-6)
