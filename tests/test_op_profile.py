"""training/op_profile.py: HLO instructions put in categories, and a real trace summed per category."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from training import op_profile
from training.op_profile import TraceEvent, by_layer_kind, categorize_hlo, layer_kind, summarize_trace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The forms a GPU program's optimised HLO takes (hand-written, so the test does not need a GPU).
FC1 = "jit(step)/jvp(TwoTower)/TwoTower.encode_image/image_tower/encoder/block3/mlp/fc1/dot_general"
GPU_HLO = """HloModule jit_step, is_scheduled=true

%fused_reduce (param_0: bf16[8,16]) -> f32[8] {
  %param_0 = bf16[8,16]{1,0} parameter(0)
  %convert.1 = f32[8,16]{1,0} convert(%param_0)
  %constant.1 = f32[] constant(0)
  ROOT %reduce.1 = f32[8]{0} reduce(%convert.1, %constant.1), dimensions={1}, to_apply=%add
}

%fused_gelu (param_0.1: bf16[8,16]) -> bf16[8,16] {
  %param_0.1 = bf16[8,16]{1,0} parameter(0)
  ROOT %tanh.1 = bf16[8,16]{1,0} tanh(%param_0.1)
}

%triton_gemm_computation (p0: bf16[8,16], p1: bf16[16,16]) -> bf16[8,16] {
  %p0 = bf16[8,16]{1,0} parameter(0)
  %p1 = bf16[16,16]{1,0} parameter(1)
  ROOT %dot.5 = bf16[8,16]{1,0} dot(%p0, %p1), lhs_contracting_dims={1}, rhs_contracting_dims={0}
}

ENTRY %main (x: bf16[8,16], w: bf16[16,16]) -> f32[8] {
  %x = bf16[8,16]{1,0} parameter(0)
  %w = bf16[16,16]{1,0} parameter(1)
  %custom-call.3 = bf16[8,16]{1,0} custom-call(%x, %w), custom_call_target="__cublas$gemm", metadata={op_name="FC1"}
  %gemm_fusion.2 = bf16[8,16]{1,0} fusion(%x, %w), kind=kCustom, calls=%triton_gemm_computation
  %custom-call.9 = (bf16[8,4,2,2]{3,2,1,0}, u8[0]{0}) custom-call(%x, %x, %x), custom_call_target="__cudnn$fmhaSoftmax"
  %loop_tanh_fusion = bf16[8,16]{1,0} fusion(%gemm_fusion.2), kind=kLoop, calls=%fused_gelu
  %input_reduce_fusion = f32[8]{0} fusion(%loop_tanh_fusion), kind=kInput, calls=%fused_reduce
  %copy.4 = bf16[16,8]{0,1} copy(%x)
  %wrapped_transpose = bf16[16,8]{1,0} fusion(%x), kind=kLoop, calls=%fused_gelu
  %all-reduce-start = f32[8]{0} all-reduce-start(%input_reduce_fusion), to_apply=%add
  ROOT %all-reduce-done = f32[8]{0} all-reduce-done(%all-reduce-start)
}
""".replace("FC1", FC1)


def test_gpu_hlo_forms_fall_in_their_categories():
    ops = categorize_hlo(GPU_HLO)
    expected = {
        "custom-call.3": "matmul",
        "gemm_fusion.2": "matmul",
        "custom-call.9": "attention",
        "loop_tanh_fusion": "elementwise",  # reads a GEMM's output, but is no GEMM
        "input_reduce_fusion": "reduction",
        "copy.4": "copy/transpose",
        "wrapped_transpose": "copy/transpose",
        "all-reduce-start": "collective",
        "all-reduce-done": "collective",
    }
    assert {name: ops[name].category for name in expected} == expected
    assert ops["custom-call.3"].source == FC1


def test_layer_kind_folds_blocks_and_names_the_pass():
    forward = "jit(train_step)/jvp(TwoTower)/TwoTower.encode_image/image_tower/encoder/block3/mlp/fc1/dot_general"
    backward = "jit(train_step)/transpose(jvp(TwoTower))/TwoTower.encode_text/text_tower/encoder/block0/ln1/mul"
    assert layer_kind(forward) == "forward image_tower encoder/block*/mlp/fc1/dot_general"
    assert layer_kind(backward) == "backward text_tower encoder/block*/ln1/mul"
    assert layer_kind("") == "(no source recorded)"


def test_a_traced_step_is_mostly_its_matmul(tmp_path):
    """A 1536^3 matmul (7.2 GFLOP) beside an add of 768 numbers: the trace must put nearly all time in
    matmul (on a CPU, the host threads' events; on a GPU, the device streams')."""

    @jax.jit
    def step(a, b, v):
        return a @ b, v + 1.0

    a, v = jnp.ones((1536, 1536)), jnp.ones((768,))
    jax.block_until_ready(step(a, a, v))
    ops = categorize_hlo(step.lower(a, a, v).compile().as_text())
    with jax.profiler.trace(str(tmp_path)):
        for _ in range(3):
            jax.block_until_ready(step(a, a, v))
    by_category, by_op = summarize_trace(str(tmp_path), ops)
    seconds = dict((c, t) for c, t, _ in by_category)
    assert seconds["matmul"] > 0.9 * sum(seconds.values())
    assert {ops[op].category for op, _ in by_op} <= set(seconds)
    kinds = by_layer_kind(by_op, ops)
    assert sum(t for _, t, _ in kinds) == pytest.approx(sum(seconds.values()))


def test_device_events_are_matched_by_hlo_op_or_kernel_name(monkeypatch):
    events = [
        TraceEvent("custom-call.3", "sm90_xmma_gemm_bf16", 3.0),  # annotated: its hlo_op names it
        TraceEvent("", "loop_tanh_fusion", 1.0),  # no stat: the kernel is named after the fusion
        TraceEvent("", "gemm_fusion_2", 2.0),  # XLA writes "gemm_fusion.2" with "_" in the kernel name
        TraceEvent("jit_step/input_reduce_fusion", "", 0.5),  # a path: its last part names the op
        TraceEvent("command_buffer.1", "sm90_xmma_gemm_bf16", 9.0),  # inside a CUDA graph: named as such
        TraceEvent("command_buffer.1", "", 1.5),
        TraceEvent("", "Memcpy HtoD", 0.25),  # no op claims it: reported, not dropped
    ]
    monkeypatch.setattr(op_profile, "trace_events", lambda log_dir: events)
    by_category, by_op = summarize_trace("unused", categorize_hlo(GPU_HLO))
    assert by_category == [
        ("matmul", 5.0, 2), ("elementwise", 1.0, 1), ("reduction", 0.5, 1), ("command buffer", 10.5, 1),
        ("unattributed", 0.25, 1),
    ]  # fmt: skip
    assert dict(by_op) == {
        "custom-call.3": 3.0,
        "gemm_fusion.2": 2.0,
        "loop_tanh_fusion": 1.0,
        "input_reduce_fusion": 0.5,
    }


def test_split_command_buffers_adds_the_flag_once_and_only_before_the_backend_starts(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    monkeypatch.setattr(op_profile.xla_bridge, "backends_are_initialized", lambda: False)
    op_profile.split_command_buffers()
    op_profile.split_command_buffers()
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2 --xla_gpu_enable_command_buffer="
    monkeypatch.setattr(op_profile.xla_bridge, "backends_are_initialized", lambda: True)
    with pytest.raises(RuntimeError, match="before JAX's first computation"):
        op_profile.split_command_buffers()


def test_xla_accepts_the_split_command_buffers_flag():
    """An unknown XLA flag aborts the process: the flag must parse (here on the CPU, where it changes nothing)."""
    code = "from training.op_profile import split_command_buffers as s; s(); import jax; print(jax.numpy.ones(3).sum())"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "3.0", result.stderr[-2000:]
