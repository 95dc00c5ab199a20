"""Two processes with jax.distributed on 127.0.0.1 (4 fake CPU devices each) train the tiny model on a
data=4 x fsdp=2 mesh spanning both, and match one process with 8 devices; their checkpoint, written
collectively by orbax, reads back exactly."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from tiny_training import assert_same_params, batch, run_steps, tiny_config

from training.distributed import environment_wants_distributed
from training.mesh import make_mesh

HERE = os.path.dirname(os.path.abspath(__file__))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 devices for the single-process reference")
def test_two_processes_match_one(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    workers = [
        subprocess.Popen(
            [sys.executable, os.path.join(HERE, "distributed_worker.py"), str(i), str(port), str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in (0, 1)
    ]
    outputs = [w.communicate(timeout=240)[0] for w in workers]
    for w, out in zip(workers, outputs, strict=True):
        assert w.returncode == 0, out[-3000:]
    result = np.load(tmp_path / "result.npz")

    config = tiny_config(**{"loss.implementation": "ring"})
    params, metrics = run_steps(config, make_mesh({"data": 4, "fsdp": 2}), [batch(config, s) for s in (0, 1)])
    np.testing.assert_allclose(result["losses"], [m["loss"] for m in metrics], rtol=1e-6)
    # Collectives across processes sum in another order than within one (see assert_same_params).
    got = jax.tree_util.tree_map_with_path(lambda path, _: result[jax.tree_util.keystr(path)], params)
    assert_same_params(got, params)
    assert bool(result["restored_same"]) and int(result["seen"]) == 2


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, False),
        ({"SLURM_NTASKS": "1"}, False),
        ({"SLURM_NTASKS": "16"}, True),
        ({"TPU_WORKER_HOSTNAMES": "t1v-n-0"}, False),
        ({"TPU_WORKER_HOSTNAMES": "t1v-n-0,t1v-n-1"}, True),
        ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"}, True),
    ],
)
def test_environment_detection(env, expected):
    assert environment_wants_distributed(env) is expected
