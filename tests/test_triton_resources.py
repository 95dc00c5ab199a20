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


def test_each_kernel_comes_out_as_triton_ir_with_its_launch_options():
    kernels = triton_resources.triton_kernels(triton_resources.cuda_module("sigmoid", "bfloat16", 48, 16, 64))
    assert set(kernels) == {"contrastive_sigmoid_loss", "contrastive_sigmoid_grad"}
    for name, (triton_ir, options) in kernels.items():
        assert f"tt.func public @{name}" in triton_ir
        assert "tt.dot" in triton_ir  # the logits tile is a matmul in the kernel
        assert "bf16" in triton_ir  # bfloat16 operands reach the kernel as such
        assert "64x" in triton_ir  # the width, padded from 48 to a power of two
        assert options == {"num_warps": 8, "num_stages": 2}


H100_SHARED_MEMORY = 232_448  # bytes per block on sm_90 (227 KiB)


@pytest.mark.parametrize(
    "width, operand_bytes, limit, block",
    [
        # 3 x block x width x bytes must fit: 3 * 32 * 512 * 4 = 192 KiB fits 227 KiB, block 64 (384 KiB) does not.
        (512, 4, H100_SHARED_MEMORY, 32),
        (512, 2, H100_SHARED_MEMORY, 64),  # bf16: 3 * 64 * 512 * 2 = 192 KiB
        (768, 4, H100_SHARED_MEMORY, 16),  # padded to 1,024: 3 * 16 * 1024 * 4 = 192 KiB
        (768, 2, H100_SHARED_MEMORY, 32),
        (256, 4, H100_SHARED_MEMORY, 64),  # never above 64
        (512, 4, 166_912, 16),  # an A100's 163 KiB: 3 * 32 * 512 * 4 = 192 KiB does not fit
        (4096, 4, 101_376, 16),  # nothing fits: the smallest block Triton's dot takes, and its launch error
    ],
)
def test_the_default_block_is_the_largest_whose_tiles_fit_shared_memory(width, operand_bytes, limit, block):
    assert fused.default_block(width, operand_bytes, limit) == block


DEFAULT_BLOCKS = [("float32", 512, 32), ("bfloat16", 512, 64), ("float32", 24, 64)]  # on an H100


@pytest.mark.parametrize("matmul_dtype, width, block", DEFAULT_BLOCKS)
def test_tile_size_0_lowers_the_kernels_with_the_default_block(matmul_dtype, width, block):
    """Lowered for a GPU from this host, tile_size 0 launches a program per default block of rows (an H100's
    shared memory: this host has no GPU)."""
    batch = 512
    assert _grids(triton_resources.cuda_module("softmax", matmul_dtype, width, 0, batch)) == {batch // block}
