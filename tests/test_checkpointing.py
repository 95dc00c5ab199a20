import jax
import jax.numpy as jnp
import numpy as np

from training.checkpointing import Checkpointer
from training.train_state import TrainState


def _state(step: int, seed: int) -> TrainState:
    rng = np.random.default_rng(seed)
    params = {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), "b": jnp.asarray(rng.normal(size=4))}
    return TrainState(
        step=jnp.asarray(step, jnp.int32),
        params=params,
        opt_state=({"mu": jax.tree.map(jnp.zeros_like, params)},),
        extra={"ema": jnp.float32(0.5)},
        rng=jax.random.PRNGKey(seed),
    )


def test_save_restore_gives_identical_state_and_latest_step(tmp_path):
    checkpointer = Checkpointer(str(tmp_path), keep=2)
    assert checkpointer.latest_step() is None
    for step in (10, 20, 30):
        checkpointer.save(_state(step, seed=step), {"next_index": step * 4})
    checkpointer.wait()
    assert checkpointer.latest_step() == 30
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _state(0, seed=0))
    restored, data_state = checkpointer.restore(target)
    expected = _state(30, seed=30)
    assert int(restored.step) == 30 and data_state == {"next_index": 120}
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(expected), strict=True):
        assert got.dtype == want.dtype and np.array_equal(got, want)
    checkpointer.close()
    # Only the two newest are kept.
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == ["20", "30"]


def test_unfinished_checkpoint_is_never_restored(tmp_path):
    checkpointer = Checkpointer(str(tmp_path), keep=3)
    checkpointer.save(_state(5, seed=5), {"next_index": 1})
    checkpointer.wait()
    checkpointer.close()
    # A write killed halfway leaves only orbax's temporary folder behind.
    (tmp_path / "checkpoints" / "9.orbax-checkpoint-tmp").mkdir()
    assert Checkpointer(str(tmp_path), keep=3).latest_step() == 5
