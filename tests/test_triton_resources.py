"""The fused loss kernels lowered for a GPU from this CPU host (Pallas' Triton lowering runs in Python), through
benchmarks/triton_resources.py's export; OpenAI Triton, which compiles the IR there, is not installed here."""

from __future__ import annotations

import collections
import importlib.util
import os
import re

import jax
import pytest

from losses import fused

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "triton_resources.py")
spec = importlib.util.spec_from_file_location("triton_resources", SCRIPT)
triton_resources = importlib.util.module_from_spec(spec)
spec.loader.exec_module(triton_resources)

# Each kind's kernels in a forward + backward pass: softmax's statistics and gradient kernels run once for the
# rows and once, sides swapped, for the columns; sigmoid's loss kernel once and its gradient kernel per side.
KERNEL_LAUNCHES = {
    "softmax": {"contrastive_softmax_stats": 2, "contrastive_softmax_grad": 2},
    "sigmoid": {"contrastive_sigmoid_loss": 1, "contrastive_sigmoid_grad": 2},
}


def _grids(module_text: str) -> set[int]:
    return {int(n) for n in re.findall(r"grid_x = (\d+)", module_text)}


@pytest.mark.parametrize(
    "kind, matmul_dtype, texts_per_image, width, block",
    [("softmax", "float32", 1, 512, 64), ("sigmoid", "bfloat16", 1, 768, 128), ("softmax", "bfloat16", 3, 96, 32)],
)
def test_fused_kernels_lower_to_triton_for_a_gpu_from_this_host(kind, matmul_dtype, texts_per_image, width, block):
    """An op or shape that Triton's lowering refuses fails here, not first on a device; the CPU lowering of the
    same step interprets the kernels (no Triton call). Whether Triton then compiles them: the device script."""
    batch = 256
    cuda = triton_resources.cuda_module(kind, matmul_dtype, width, block, batch, texts_per_image)
    launches = re.findall(r'name = "(contrastive_\w+)", num_stages', cuda)
    assert collections.Counter(launches) == KERNEL_LAUNCHES[kind]
    assert len(launches) == cuda.count("stablehlo.custom_call @__gpu$xla.gpu.triton")
    # A program per block of rows: images' for the rows' kernels, texts' (K per image) for the columns'.
    assert _grids(cuda) == {batch // block, batch * texts_per_image // block}
    step = jax.jit(triton_resources.loss_step(kind, matmul_dtype, block))
    cpu = step.trace(*triton_resources.step_arguments(batch, width, texts_per_image)).lower().as_text()
    assert "xla.gpu.triton" not in cpu


def _tile_shapes(triton_ir: str) -> set[str]:
    """The 2-d tensor shapes ("16x32", ...) a kernel's Triton IR computes on."""
    return set(re.findall(r"tensor<(\d+x\d+)x", triton_ir))


def test_each_kernel_comes_out_as_triton_ir_with_its_launch_options():
    kernels = triton_resources.triton_kernels(triton_resources.cuda_module("sigmoid", "bfloat16", 48, 16, 64))
    assert set(kernels) == {"contrastive_sigmoid_loss", "contrastive_sigmoid_grad"}
    for name, (triton_ir, options) in kernels.items():
        assert f"tt.func public @{name}" in triton_ir
        assert "tt.dot" in triton_ir  # the logits tile is a matmul in the kernel
        assert "bf16" in triton_ir  # bfloat16 operands reach the kernel as such
        assert options == {"num_warps": 8, "num_stages": 2}
    # The GEMM pattern: width 48, padded to 64, is read 32 features at a time, never whole; the logits tile is
    # [16, 16] and the gradient's accumulator one [16, 32] tile per chunk.
    grad_ir = kernels["contrastive_sigmoid_grad"][0]
    assert {"16x32", "32x16", "16x16"} <= _tile_shapes(grad_ir)
    assert not {shape for shape in _tile_shapes(grad_ir) if "64" in shape.split("x")}
    dots = re.findall(r"tensor<(\d+x\d+)xbf16> \* tensor<(\d+x\d+)xbf16> -> tensor<(\d+x\d+)xf32>", grad_ir)
    assert set(dots) == {("16x32", "32x16", "16x16"), ("16x16", "16x32", "16x32")}
    # Two chunks: two logits steps in a loop (one dot in the IR) and one gradient product per chunk.
    assert len(dots) == 3


def test_the_width_is_padded_to_a_multiple_of_the_chunk_not_a_power_of_two():
    """d = 768 reaches the kernels as 768 (24 chunks of 32); padding it to 1,024 would be a third more work."""
    cuda = triton_resources.cuda_module("softmax", "float32", 768, 64, 256)
    calls = [line for line in cuda.splitlines() if "stablehlo.custom_call @__gpu$xla.gpu.triton" in line]
    assert len(calls) == 4
    for call in calls:  # the operands: a [256, 768], its vectors, b [256, 768], b's vectors
        assert call.split("} : (")[-1].split(") ->")[0].count("tensor<256x768xf32>") == 2


@pytest.mark.parametrize("matmul_dtype, width", [("float32", 512), ("bfloat16", 768), ("float32", 24)])
def test_tile_size_0_lowers_the_kernels_with_the_default_block(matmul_dtype, width):
    """Lowered for a GPU from this host, tile_size 0 launches a program per 64 rows, whatever the width and dtype:
    the features' chunks keep each program's shared memory independent of d (benchmarks/triton_resources.py)."""
    batch = 512
    assert fused.DEFAULT_BLOCK == 64
    assert _grids(triton_resources.cuda_module("softmax", matmul_dtype, width, 0, batch)) == {batch // 64}
