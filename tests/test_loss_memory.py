"""Smoke test of benchmarks/loss_memory.py at a small batch: the dry run compiles an objective with batch
fields (DreamLIP's sub-captions) over 8 devices, and a dense-only pair (clip_hard_negatives' top-k) is
reported, not compiled."""

import importlib.util
import os

import jax
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("loss_memory", os.path.join(ROOT, "benchmarks", "loss_memory.py"))
loss_memory = importlib.util.module_from_spec(spec)
spec.loader.exec_module(loss_memory)

if jax.device_count() < 8:
    pytest.skip("needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8", allow_module_level=True)

BATCH = 64


def test_rows_and_table_at_a_small_batch():
    ring = loss_memory.measure("dreamlip", "ring_tiled", 8, BATCH)
    # dense-only at its defaults (the top-k term): reported, not compiled
    hard = loss_memory.measure("clip_hard_negatives", "tiled", 1, BATCH)
    assert ring["supported"] and ring["temporaries_gib"] > 0 and ring["peak_gib"] >= ring["temporaries_gib"]
    assert not hard["supported"] and "temporaries_gib" not in hard
    table = loss_memory.format_table([ring, hard], BATCH)
    assert "| dreamlip | 128 | - | - |" in table and "| clip_hard_negatives | 128 | - | dense only | - |" in table
