"""One process of the 2-process test (tests/test_multiprocess.py): 4 fake CPU devices, jax.distributed
on 127.0.0.1, the tiny model trained two steps on a data=4 x fsdp=2 mesh spanning both processes,
then a collective orbax checkpoint written and read back.

python tests/distributed_worker.py PROCESS_ID PORT OUT_DIR
"""

import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
from tiny_training import batch, build, tiny_config  # noqa: E402

from training.checkpointing import Checkpointer  # noqa: E402
from training.distributed import maybe_initialize  # noqa: E402
from training.mesh import batch_sharding, make_mesh  # noqa: E402

MESH = {"data": 4, "fsdp": 2}


def local_rows(global_batch: dict, sharding) -> dict:
    """The rows of `global_batch` that this process's devices hold, in order."""
    shape = global_batch["image"].shape
    spans = {(i[0].start or 0, i[0].stop or shape[0]) for i in sharding.addressable_devices_indices_map(shape).values()}
    rows = np.concatenate([np.arange(start, stop) for start, stop in sorted(spans)])
    return {k: v[rows] for k, v in global_batch.items()}


def main(process_id: int, port: int, out_dir: str) -> None:
    config = tiny_config(
        **{
            "distributed.initialize": "on",
            "distributed.coordinator_address": f"127.0.0.1:{port}",
            "distributed.num_processes": 2,
            "distributed.process_id": process_id,
            "loss.implementation": "ring",
        }
    )
    assert maybe_initialize(config)
    assert jax.process_count() == 2 and jax.device_count() == 8 and jax.local_device_count() == 4
    mesh = make_mesh(MESH)
    state, step, _ = build(config, mesh)
    losses = []
    for seed in (0, 1):
        local = local_rows(batch(config, seed), batch_sharding(mesh))
        global_ = jax.tree.map(lambda x: jax.make_array_from_process_local_data(batch_sharding(mesh), x), local)
        with jax.set_mesh(mesh):
            state, metrics = step(state, global_)
        losses.append(float(metrics["loss"]))
    checkpointer = Checkpointer(os.path.join(out_dir, "run"), keep=1)
    checkpointer.save(state, {"seen": 2})
    checkpointer.wait()
    restored, data_state = checkpointer.restore(
        jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
    )
    checkpointer.close()
    params = multihost_utils.process_allgather(state.params, tiled=True)
    restored_params = multihost_utils.process_allgather(restored.params, tiled=True)
    if process_id == 0:
        flat = {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}
        same = all(
            np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(restored_params), strict=True)
        )
        np.savez(
            os.path.join(out_dir, "result.npz"),
            losses=np.asarray(losses),
            restored_same=same,
            seen=data_state["seen"],
            **flat,
        )
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
