"""training/collectives.py: the bytes a compiled step's collectives send, against counts by hand."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from training.collectives import collective_traffic, group_size, sent_bytes


def test_group_size_reads_each_form_of_replica_groups():
    assert group_size("all-reduce(%x), replica_groups={{0,4},{1,5},{2,6},{3,7}}, to_apply=%add", 8) == 2
    assert group_size("all-gather(%x), replica_groups=[2,4]<=[8], dimensions={0}", 8) == 4
    mesh_form = (
        "all-gather(%p), replica_groups=mesh['axis_0'=4,'axis_1'=1,'axis_2'=2], device_ids=([2,4]T(1,0)) "
        "{'axis_0'}, dimensions={0}"
    )
    assert group_size(mesh_form, 8) == 4
    both = "all-reduce(%p), replica_groups=mesh['a'=4,'b'=2], device_ids=([2,4]) {'a','b'}, to_apply=%add"
    assert group_size(both, 8) == 8
    assert group_size("all-reduce(%x), replica_groups={}, to_apply=%add", 16) == 16


@pytest.mark.parametrize(
    ("opcode", "expected"),
    # 1 KiB results over groups of 4: ring all-gather sends 3/4 of it, all-reduce twice that,
    # reduce-scatter 3 shards of 1 KiB, a permute the whole buffer once.
    [
        ("all-gather", 768.0),
        ("all-reduce", 1536.0),
        ("reduce-scatter", 3072.0),
        ("all-to-all", 768.0),
        ("collective-permute", 1024.0),
    ],
)
def test_ring_bytes_per_collective(opcode, expected):
    assert sent_bytes(opcode, 1024, 4) == expected
    assert sent_bytes("all-reduce", 1024, 1) == 0.0  # a group of one sends nothing


def test_a_compiled_shard_map_program_counted_by_hand():
    """A loop of 3 ring permutes of a [16, 128] f32 shard, a psum over 2 devices and an all-gather over 4."""
    mesh = jax.make_mesh((2, 4), ("data", "fsdp"))

    def program(a):
        ring = [(j, (j + 1) % 4) for j in range(4)]
        a = jax.lax.fori_loop(0, 3, lambda _, a: jax.lax.ppermute(a, "fsdp", ring), a)
        return a + jax.lax.psum(a, "data") + jax.lax.all_gather(a, "fsdp", tiled=True)[: a.shape[0]]

    step = jax.jit(jax.shard_map(program, mesh=mesh, in_specs=P("fsdp"), out_specs=P("fsdp")))
    x = jax.ShapeDtypeStruct((64, 128), jnp.float32, sharding=NamedSharding(mesh, P("fsdp")))
    traffic = collective_traffic(step.lower(x).compile().as_text(), devices=8)
    shard = 16 * 128 * 4
    assert traffic.bytes_by_kind == {
        "collective-permute": 3 * shard,  # once per iteration of the known 3
        "all-reduce": 2 * shard * (1 / 2),
        "all-gather": 4 * shard * (3 / 4),
    }
    assert not traffic.lower_bound and traffic.total == 3 * shard + shard + 3 * shard


HLO = """HloModule m, num_partitions=4

%body (p: (s32[], f32[8])) -> (s32[], f32[8]) {
  %p = (s32[], f32[8]{0}) parameter(0)
  %x = f32[8]{0} get-tuple-element(%p), index=1
  %cp = f32[8]{0} collective-permute(%x), channel_id=1, source_target_pairs={{0,1},{1,2},{2,3},{3,0}}
  ROOT %t = (s32[], f32[8]{0}) tuple(%x, %cp)
}

%cond (p.1: (s32[], f32[8])) -> pred[] {
  %p.1 = (s32[], f32[8]{0}) parameter(0)
  ROOT %c = pred[] constant(true)
}

%big (b: f32[8]) -> f32[32] {
  %b = f32[8]{0} parameter(0)
  ROOT %ag = f32[32]{0} all-gather(%b), replica_groups={{0,1,2,3}}, dimensions={0}
}

%small (s: f32[8]) -> f32[32] {
  %s = f32[8]{0} parameter(0)
  ROOT %pad = f32[32]{0} pad(%s, %s), padding=0_24
}

ENTRY %main (a: f32[8], i: s32[]) -> f32[32] {
  %a = f32[8]{0} parameter(0)
  %i = s32[] parameter(1)
  %w = (s32[], f32[8]{0}) while(%a), condition=%cond, body=%body
  %ars = (f32[8]{0}, f32[8]{0}) all-reduce-start(%a), replica_groups={}, to_apply=%add
  %ard = f32[8]{0} all-reduce-done(%ars)
  ROOT %c = f32[32]{0} conditional(%i, %a, %a), branch_computations={%small, %big}
}
"""


def test_unknown_trip_counts_async_pairs_and_conditionals():
    traffic = collective_traffic(HLO, devices=4)
    # The loop's permute once (trip count unknown: a lower bound), the async all-reduce once at its "-done",
    # and of the two branches the one that gathers.
    assert traffic.bytes_by_kind == {
        "collective-permute": 32.0,
        "all-reduce": 32 * 2 * 3 / 4,
        "all-gather": 128 * 3 / 4,
    }
    assert traffic.lower_bound


def test_both_forms_of_a_conditionals_branches():
    from training.collectives import _branches

    assert _branches("conditional(%i, %a, %b), branch_computations={%small, %big.1}") == ["small", "big.1"]
    assert _branches("conditional(%p, %a, %b), true_computation=%yes, false_computation=%no") == ["yes", "no"]
