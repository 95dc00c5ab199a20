"""What the fused loss kernels (losses/fused.py) ask of a GPU, found on a host without one.

    pip install triton   # OpenAI Triton: its compiler and ptxas need no GPU; not a dependency of the project
    python benchmarks/triton_resources.py --widths=512,768 --blocks=16,32,64,128 --matmul_dtypes=float32,bfloat16

For each kind, operand dtype, embedding width and block, the loss's forward + backward is exported for CUDA
(jax.export: Pallas lowers the kernels to Triton IR in Python), each kernel's Triton IR is compiled by OpenAI
Triton for --arch (default sm_90: H100, H200) with the kernels' warps and stages, and the table gives its shared
memory per block (against --shared_kib, an H100's 227 KiB by default: above it the kernel cannot launch), its
registers per thread and the bytes per thread it spills to local memory when registers run out (cuobjdump's
STACK: the stack frame ptxas spills to; its LOCAL counts only declared local arrays, 0 here), read from the cubin
by cuobjdump. "default" marks the block that tile_size 0 picks (fused.DEFAULT_BLOCK). jaxlib compiles the same IR
with the Triton it bundles, whose allocation can differ a little from the pip package's.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import subprocess
import sys
import tempfile
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax._src.interpreters import mlir as jax_mlir  # noqa: E402
from jax._src.lib import triton as jax_triton  # noqa: E402
from jax._src.lib.mlir import ir  # noqa: E402

from losses import fused  # noqa: E402
from losses.contrastive import contrastive_loss  # noqa: E402

TRITON_CALL = "__gpu$xla.gpu.triton"


def loss_step(kind: str, matmul_dtype: str, block: int):
    """The fused loss's value and gradients in (image, text, logit_scale, logit_bias); block 0 = the default."""

    def loss(image, text, logit_scale, logit_bias):
        bias = logit_bias if kind == "sigmoid" else None
        options = {"implementation": "fused", "tile_size": block, "matmul_dtype": matmul_dtype}
        return contrastive_loss(image, text, logit_scale, bias, kind=kind, **options)[0]

    return jax.value_and_grad(loss, argnums=(0, 1, 2, 3))


def step_arguments(batch: int, width: int, texts_per_image: int = 1) -> list[jax.ShapeDtypeStruct]:
    """Shapes of loss_step's arguments: image [B, d], text [B, d] or [B, K, d], two scalars."""
    text = (batch, texts_per_image, width) if texts_per_image > 1 else (batch, width)
    return [jax.ShapeDtypeStruct(shape, jnp.float32) for shape in ((batch, width), text, (), ())]


def cuda_module(kind: str, matmul_dtype: str, width: int, block: int, batch: int, texts_per_image: int = 1) -> str:
    """The loss step exported for CUDA, as StableHLO text: each kernel a Triton custom call holding its IR."""
    checks = [jax.export.DisabledSafetyCheck.custom_call(TRITON_CALL)]
    step = jax.jit(loss_step(kind, matmul_dtype, block))
    exported = jax.export.export(step, platforms=["cuda"], disabled_checks=checks)
    return exported(*step_arguments(batch, width, texts_per_image)).mlir_module()


def triton_kernels(module_text: str) -> dict[str, tuple[str, dict]]:
    """{kernel name: (Triton IR text, {num_warps, num_stages})} of the Triton calls in cuda_module's text."""
    context = jax_mlir.make_ir_context()
    jax_triton.dialect.register_dialect(context)
    kernels = {}
    with context:

        def visit(operation):
            for region in operation.regions:
                for body in region.blocks:
                    for op in body.operations:
                        if op.name == "stablehlo.custom_call" and TRITON_CALL in str(op.attributes["call_target_name"]):
                            config = op.attributes["mhlo.backend_config"]
                            name = ir.StringAttr(config["name"]).value
                            triton_ir = str(ir.Module.parse(ir.StringAttr(config["ir"]).value_bytes))
                            options = {k: ir.IntegerAttr(config[k]).value for k in ("num_warps", "num_stages")}
                            kernels[name] = (triton_ir, options)
                        visit(op)

        visit(ir.Module.parse(module_text).operation)
    return kernels


def compile_for(triton_ir: str, options: dict, arch: int) -> tuple[int, str, str]:
    """(shared memory bytes, registers, spilled bytes) a thread of one kernel compiled by OpenAI Triton for
    sm_<arch> uses; spills are the stack frame (cuobjdump's STACK)."""
    import triton
    from triton.backends.compiler import GPUTarget

    with tempfile.TemporaryDirectory() as folder:
        source = os.path.join(folder, "kernel.ttir")
        with open(source, "w") as f:
            f.write(triton_ir)
        kernel = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)
        cubin = os.path.join(folder, "kernel.cubin")
        with open(cubin, "wb") as f:
            f.write(kernel.asm["cubin"])
        cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
        usage = subprocess.run([cuobjdump, "-res-usage", cubin], capture_output=True, text=True, check=True).stdout
    registers = re.search(r"REG:(\d+)", usage)
    spilled = re.search(r"STACK:(\d+)", usage)
    return kernel.metadata.shared, registers.group(1) if registers else "?", spilled.group(1) if spilled else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", default="softmax,sigmoid")
    parser.add_argument("--matmul_dtypes", default="float32,bfloat16")
    parser.add_argument("--widths", default="512,768", help="embedding widths (padded to a multiple of fused.CHUNK)")
    parser.add_argument("--blocks", default="16,32,64,128")
    parser.add_argument("--batch", type=int, default=4096, help="the batch does not change a kernel's resources")
    parser.add_argument("--arch", type=int, default=90, help="compute capability x 10: 90 = H100 / H200")
    parser.add_argument("--shared_kib", type=int, default=227, help="shared memory one block may use")
    args = parser.parse_args()
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton 3.9 warns unless it is set; 1 = its default
    warnings.filterwarnings("ignore", module="triton")
    limit = args.shared_kib * 1024
    print(f"sm_{args.arch}, {args.shared_kib} KiB of shared memory per block; jax {jax.__version__}\n")
    print("| kernel | operands | width | block | shared memory | fits | registers | spilled bytes |")
    print("|---|---|---|---|---|---|---|---|")
    grid = itertools.product(
        args.kinds.split(","), args.matmul_dtypes.split(","), map(int, args.widths.split(",")),
        map(int, args.blocks.split(",")),
    )  # fmt: skip
    for kind, dtype, width, block in grid:
        for name, (triton_ir, options) in triton_kernels(cuda_module(kind, dtype, width, block, args.batch)).items():
            shared, registers, spilled = compile_for(triton_ir, options, args.arch)
            fits = "yes" if shared <= limit else "**no**"
            label = f"{block} (default)" if block == fused.DEFAULT_BLOCK else str(block)
            size = f"{shared / 1024:.0f} KiB"
            print(f"| {name} | {dtype} | {width} | {label} | {size} | {fits} | {registers} | {spilled} |", flush=True)


if __name__ == "__main__":
    main()
