"""config.model.scan_layers: the towers' blocks as one lax.scan, against the unrolled towers as reference."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from tiny_training import assert_same_params, batch, build, initial_state, run_steps, tiny_config

from models.bert import BertEncoder
from models.text_transformer import TextTransformer
from training.collectives import collective_traffic
from training.flops import matmul_flops
from training.mesh import global_batch, make_mesh

DEPTH = 3


def _config(**overrides):
    return tiny_config(**{"model.image.depth": DEPTH, "model.text.depth": DEPTH, **overrides})


def test_scanned_rematerialised_towers_init_and_train_as_the_unrolled_ones():
    # The reference is the plain unrolled step (remat alone is checked against it in test_precision.py).
    unrolled, scanned = _config(), _config(**{"model.remat": True, "model.scan_layers": True})
    start = initial_state(unrolled)
    # The unrolled loop creates the parameters either way: the same seed gives the same weights, same names.
    assert_same_params(initial_state(scanned).params, start.params, atol=0)
    mesh = make_mesh({"data": 1}, jax.devices()[:1])
    batches = [batch(unrolled, 0), batch(unrolled, 1)]
    want_params, want = run_steps(unrolled, mesh, batches, start)
    state, step, _ = build(scanned, mesh, start)
    jaxpr = str(step.trace(state, global_batch(batches[0], mesh)).jaxpr)
    assert jaxpr.count(f"length={DEPTH}") >= 2  # one scan per tower (the backward pass adds its own)
    got_params, got = run_steps(scanned, mesh, batches, start)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g["loss"], w["loss"], rtol=1e-6)
    assert_same_params(got_params, want_params)


def test_scanned_towers_train_sharded_over_data_and_fsdp():
    config = _config(**{"model.scan_layers": True, "mesh.fsdp": 4, "mesh.data": 2})
    start = initial_state(_config())  # the unrolled init: test above
    batches = [batch(config, 0)]
    want_params, want = run_steps(_config(), make_mesh({"data": 1}, jax.devices()[:1]), batches, start)
    mesh = make_mesh({"data": 2, "fsdp": 4}, jax.devices()[:8])
    got_params, got = run_steps(config, mesh, batches, start)
    np.testing.assert_allclose(got[0]["loss"], want[0]["loss"], rtol=1e-6)
    assert_same_params(got_params, want_params)


def test_bfloat16_scanned_tower_is_as_close_to_float32_as_the_unrolled_one():
    tokens = jnp.asarray(np.random.default_rng(0).integers(1, 50, (4, 8)), jnp.int32)
    kw = dict(vocab_size=50, width=32, depth=DEPTH, heads=2, max_len=8)
    params = TextTransformer(**kw).init(jax.random.key(0), tokens)
    reference = np.asarray(TextTransformer(**kw).apply(params, tokens)[1])
    bf16 = dict(kw, dtype=jnp.bfloat16)
    unrolled = np.asarray(TextTransformer(**bf16).apply(params, tokens)[1], np.float32)
    scanned = np.asarray(TextTransformer(**bf16, scan_layers=True).apply(params, tokens)[1], np.float32)
    unrolled_error, scanned_error = np.abs(unrolled - reference).mean(), np.abs(scanned - reference).mean()
    assert 0 < scanned_error < 1.5 * unrolled_error, (scanned_error, unrolled_error)


def test_bert_tower_scans_with_dropout_as_strong_as_unrolled():
    words = np.random.default_rng(1).integers(1, 50, (3, 6))
    tokens = jnp.asarray(np.concatenate([words, np.zeros((3, 2), int)], axis=1), jnp.int32)  # 2 padding
    kw = dict(vocab_size=50, width=32, depth=DEPTH, heads=2, max_len=8, dropout_rate=0.2)
    params = BertEncoder(**kw).init(jax.random.key(0), tokens)
    unrolled, scanned = BertEncoder(**kw), BertEncoder(**kw, scan_layers=True)
    for want, got in zip(unrolled.apply(params, tokens), scanned.apply(params, tokens), strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)

    def train_mode(model, seed):
        return model.apply(params, tokens, deterministic=False, rngs={"dropout": jax.random.key(seed)})[1]

    first, eval_mode = train_mode(scanned, 0), scanned.apply(params, tokens)[1]
    np.testing.assert_array_equal(np.asarray(first), np.asarray(train_mode(scanned, 0)))
    assert not np.allclose(first, train_mode(scanned, 1)) and not np.allclose(first, eval_mode)
    # Other masks than the unrolled tower's, drawn at the same rate in every block: as far from eval mode.
    ratio = float(jnp.abs(first - eval_mode).mean() / jnp.abs(train_mode(unrolled, 0) - eval_mode).mean())
    assert 0.7 < ratio < 1.4, ratio


def test_flops_count_a_scanned_tower_once_per_block():
    tokens = jnp.ones((2, 8), jnp.int32)
    kw = dict(vocab_size=50, width=32, depth=DEPTH, heads=2, max_len=8)
    params = TextTransformer(**kw).init(jax.random.key(0), tokens)
    unrolled = matmul_flops(lambda p: TextTransformer(**kw).apply(p, tokens), params)
    # By hand: per block, q k v and out projections (4 x 32 x 32), attention (2 x 8 x 32 per position), MLP
    # (2 x 32 x 128); 2 x multiply-adds, 16 positions.
    per_block = 2 * 16 * (4 * 32 * 32 + 2 * 8 * 32 + 2 * 32 * 128)
    assert unrolled == DEPTH * per_block
    assert matmul_flops(lambda p: TextTransformer(**kw, scan_layers=True).apply(p, tokens), params) == unrolled


def test_scanned_towers_send_what_the_unrolled_ones_send_over_fsdp():
    # Unpinned, XLA's partitioner all-reduced activations inside the loop instead of gathering the weights.
    # With remat both gather each block's weights twice (forward, and again for the backward pass).
    mesh = make_mesh({"data": 2, "fsdp": 4}, jax.devices()[:8])
    sent = {}
    for scan in (False, True):
        overrides = {"model.scan_layers": scan, "model.remat": True, "mesh.fsdp": 4, "mesh.data": 2, "batch_size": 64}
        config = _config(**overrides)
        state, step, _ = build(config, mesh)
        with jax.set_mesh(mesh):
            hlo = step.lower(state, global_batch(batch(config), mesh)).compile().as_text()
        sent[scan] = collective_traffic(hlo, devices=8).bytes_by_kind
    assert sent[False]["all-gather"] > 0
    for kind in ("all-gather", "all-reduce"):
        assert sent[True].get(kind, 0) <= 1.05 * sent[False][kind], (kind, sent)
    assert sum(sent[True].values()) <= 1.05 * sum(sent[False].values()), sent
