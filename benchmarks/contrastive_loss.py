"""Memory and speed of the contrastive-loss implementations: forward + backward, fp32, d = 512.

    python benchmarks/contrastive_loss.py                           # (a) compiled temporaries, B = 4096 .. 1048576
    python benchmarks/contrastive_loss.py --execute=4096,16384      # (b) + time and peak RSS, one subprocess each
    python benchmarks/contrastive_loss.py --budget_gib=16           # (c) + largest batch within 16 GiB
    python benchmarks/contrastive_loss.py --skip_memory_table --accuracy=4096 --implementations=dense,tiled \
        --matmul_dtypes=float32,bfloat16                            # (d) loss and gradients against float64
    python benchmarks/contrastive_loss.py --skip_memory_table --implementations=tiled,fused@32,fused@64 \
        --execute=65536                                             # (b) with the fused kernels' block sizes

(a) and (c) only compile (XLA's memory analysis of the jitted value-and-grad); nothing runs.
--matmul_dtypes (config.loss.matmul_dtype) multiplies (b) and (d) by the operand dtypes; float32 runs at
jax's default matmul precision (TF32 on NVIDIA GPUs; --jax_default_matmul_precision=float32 for full fp32).
On an accelerator (b) also reports the device's peak memory.
`fused` (or `fused@<block>`; default: fused.DEFAULT_BLOCK, 64) runs the Pallas
kernels: on a GPU compiled by Triton, on the CPU interpreted (correct, not fast: time it on a GPU). `dense`,
`tiled` and `fused` compile for one CPU device;
`gathered`, `ring` and `ring_tiled` for --devices fake CPU devices with the batch sharded over them, and
their numbers are per device.
(b) runs each (implementation, batch) in a fresh subprocess so that its peak RSS is its own; runs
whose compiled footprint exceeds --execute_limit_gib are skipped rather than risking the machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import time

DISTRIBUTED = ("gathered", "ring", "ring_tiled")
GIB = 2**30


def _parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", default="softmax", choices=("softmax", "sigmoid"))
    parser.add_argument("--implementations", default="dense,gathered,ring,tiled,ring_tiled")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--tile_size", type=int, default=0, help="0 = the backend's edge (512 CPU, 4,096 GPU/TPU)")
    parser.add_argument("--devices", type=int, default=8, help="fake CPU devices for the distributed implementations")
    parser.add_argument("--min_batch", type=int, default=4096)
    parser.add_argument("--max_batch", type=int, default=1_048_576)
    parser.add_argument("--skip_memory_table", action="store_true", help="skip (a)")
    parser.add_argument("--execute", default="", help="comma-separated batch sizes to run, e.g. 4096,16384")
    parser.add_argument("--execute_limit_gib", type=float, default=12.0, help="skip runs whose footprint exceeds it")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per execution; the minimum is reported")
    parser.add_argument("--budget_gib", type=float, default=0.0, help="report the largest batch within this budget")
    parser.add_argument("--matmul_dtypes", default="float32", help="comma-separated config.loss.matmul_dtype values")
    parser.add_argument("--accuracy", default="", help="comma-separated batch sizes to check against float64")
    parser.add_argument("--accuracy_scale", type=float, default=100.0, help="logit scale of (d); CLIP trains to 100")
    parser.add_argument("--jax_default_matmul_precision", default="", help="e.g. float32: full fp32 on a GPU")
    parser.add_argument("--child", nargs=3, metavar=("IMPLEMENTATION", "BATCH", "DTYPE"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# jax reads XLA_FLAGS once, at import: the fake devices must be set before it.
ARGS = _parse_args()
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={ARGS.devices}"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from losses.contrastive import contrastive_loss, resolve_tile_size  # noqa: E402


def _setup(implementation: str, args, matmul_dtype: str = "float32"):
    """(value-and-grad function, in_shardings or None, mesh or None) for one implementation."""
    mesh = Mesh(np.asarray(jax.devices()[: args.devices]), ("data",)) if implementation in DISTRIBUTED else None

    # "fused@32": the fused kernels with 32 x 32 blocks (--tile_size is the jnp implementations' edge).
    name, _, block = implementation.partition("@")
    tile_size = int(block or 0) if name == "fused" else args.tile_size

    def loss(image, text, logit_scale, logit_bias):
        bias = logit_bias if args.kind == "sigmoid" else None
        options = dict(kind=args.kind, implementation=name, tile_size=tile_size, mesh=mesh)
        return contrastive_loss(image, text, logit_scale, bias, matmul_dtype=matmul_dtype, **options)[0]

    step = jax.value_and_grad(loss, argnums=(0, 1, 2, 3))
    if mesh is None:
        return step, None, mesh
    batch, scalar = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
    return step, (batch, batch, scalar, scalar), mesh


def _compile(implementation: str, batch: int, args, matmul_dtype: str = "float32"):
    step, shardings, _ = _setup(implementation, args, matmul_dtype)
    embedding = jax.ShapeDtypeStruct((batch, args.dim), jnp.float32)
    scalar = jax.ShapeDtypeStruct((), jnp.float32)
    jitted = jax.jit(step) if shardings is None else jax.jit(step, in_shardings=shardings)
    return jitted.lower(embedding, embedding, scalar, scalar).compile()


def _footprint(compiled) -> tuple[int, int]:
    """(temporary bytes, temporaries + arguments + outputs bytes), per device."""
    m = compiled.memory_analysis()
    total = m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
    return m.temp_size_in_bytes, total


def _batches(args) -> list[int]:
    out, batch = [], args.min_batch
    while batch <= args.max_batch:
        out.append(batch)
        batch *= 2
    return out


def _gib(n: float) -> str:
    return f"{n / GIB:.3f}" if n < GIB else f"{n / GIB:.2f}"


def memory_table(implementations: list[str], args) -> None:
    """(a) Compiled temporaries per implementation and batch, with their ratio to one B x d matrix."""
    print(f"\n(a) {args.kind} fwd+bwd temporaries from XLA memory analysis, GiB (x one B*d fp32 matrix); d={args.dim}")
    print(
        f"    distributed implementations: per device of {args.devices}; tile_size={resolve_tile_size(args.tile_size)}"
    )
    print("| B | B*d matrix | " + " | ".join(implementations) + " |")
    print("|---:|---:|" + "---:|" * len(implementations))
    for batch in _batches(args):
        matrix = batch * args.dim * 4
        cells = []
        for implementation in implementations:
            temp, _ = _footprint(_compile(implementation, batch, args))
            cells.append(f"{_gib(temp)} ({temp / matrix:.2f}x)")
        print(f"| {batch:,} | {_gib(matrix)} | " + " | ".join(cells) + " |", flush=True)


def _inputs(batch: int, dim: int, noise: float = 1.0):
    """Unit image rows and text rows correlated with them (cosine 1 / sqrt(1 + noise^2)), log scale log 10,
    bias -10."""

    def make(key):
        image_key, noise_key = jax.random.split(key)
        image = jax.random.normal(image_key, (batch, dim), jnp.float32)
        text = image + noise * jax.random.normal(noise_key, image.shape, jnp.float32)
        unit = lambda a: a / jnp.linalg.norm(a, axis=-1, keepdims=True)  # noqa: E731
        return unit(image), unit(text), jnp.float32(np.log(10.0)), jnp.float32(-10.0)

    return make


def _child(implementation: str, batch: int, args, matmul_dtype: str) -> None:
    """Runs one (implementation, batch) and prints a JSON line: compile and run seconds, peak RSS."""
    step, shardings, mesh = _setup(implementation, args, matmul_dtype)
    start = time.perf_counter()
    compiled = _compile(implementation, batch, args, matmul_dtype)
    compile_s = time.perf_counter() - start
    _, total = _footprint(compiled)
    if total * (args.devices if mesh else 1) > args.execute_limit_gib * GIB:
        print(json.dumps({"skipped": f"needs {_gib(total)} GiB per device"}))
        return

    inputs = _inputs(batch, args.dim)
    make = jax.jit(inputs, out_shardings=shardings) if shardings else jax.jit(inputs)
    operands = jax.block_until_ready(make(jax.random.PRNGKey(0)))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*operands))
        times.append(time.perf_counter() - start)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = {"compile_s": compile_s, "run_s": min(times), "peak_rss": peak_rss, "rss_before": rss_before}
    stats = jax.devices()[0].memory_stats() or {}  # None on the CPU
    print(json.dumps(dict(result, footprint=total, device_peak=stats.get("peak_bytes_in_use"))))


def execution_table(implementations: list[str], batches: list[int], args) -> None:
    """(b) Wall time and peak RSS, one subprocess per run."""
    print(f"\n(b) {args.kind} fwd+bwd executed on this machine: seconds, and peak RSS of the whole process")
    print("    (peak before run: over start-up, compiling and inputs; compiled footprint: XLA, all devices)")
    print("| implementation | matmul dtype | B | run s | compile s | peak RSS GiB | peak before run GiB "
          "| compiled footprint GiB | device peak GiB |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for batch, implementation, dtype in itertools.product(batches, implementations, args.matmul_dtypes.split(",")):
        name = f"| {implementation} | {dtype} | {batch:,} |"
        child = ["--child", implementation, str(batch), dtype]
        result = subprocess.run([sys.executable, os.path.abspath(__file__), *sys.argv[1:], *child], capture_output=True,
                                text=True)  # fmt: skip
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        if result.returncode or not lines:
            print(f"{name} failed (exit {result.returncode}): {result.stderr.strip()[-200:]} | | | | | |", flush=True)
            continue
        r = json.loads(lines[-1])
        if "skipped" in r:
            print(f"{name} skipped: {r['skipped']} | | | | | |", flush=True)
            continue
        devices = args.devices if implementation in DISTRIBUTED else 1
        row = f"{r['run_s']:.3f} | {r['compile_s']:.1f} | {_gib(r['peak_rss'])} | {_gib(r['rss_before'])}"
        device_peak = "" if r["device_peak"] is None else _gib(r["device_peak"])
        print(f"{name} {row} | {_gib(r['footprint'] * devices)} | {device_peak} |", flush=True)


def _float64_softmax(image, text, logit_scale):
    """CLIP's loss and d loss / d image in float64 NumPy: the reference of (d)."""
    image, text = np.asarray(image, np.float64), np.asarray(text, np.float64)
    scale = np.exp(np.float64(logit_scale))
    logits = scale * image @ text.T
    row_max, col_max = logits.max(1, keepdims=True), logits.max(0, keepdims=True)
    row_prob, col_prob = np.exp(logits - row_max), np.exp(logits - col_max)
    row_lse = np.log(row_prob.sum(1, keepdims=True)) + row_max
    col_lse = np.log(col_prob.sum(0, keepdims=True)) + col_max
    loss = np.mean(0.5 * (row_lse[:, 0] + col_lse[0]) - np.diag(logits))
    d_logits = (0.5 * (np.exp(logits - row_lse) + np.exp(logits - col_lse)) - np.eye(len(image))) / len(image)
    return loss, scale * d_logits @ text


def accuracy_table(implementations: list[str], batches: list[int], args) -> None:
    """(d) Softmax loss and d loss / d image of each implementation and matmul dtype against float64."""
    precision = jax.config.jax_default_matmul_precision or "default"
    print(f"\n(d) softmax loss against float64 NumPy on {jax.default_backend()} (matmul precision {precision}),")
    print(f"    logit scale {args.accuracy_scale:g}; errors relative to the reference loss / to the largest reference "
          "gradient entry")  # fmt: skip
    print("| implementation | matmul dtype | B | float64 loss | loss rel. error | d image max rel. error |")
    print("|---|---|---:|---:|---:|---:|")
    for batch in batches:
        # Positive cosine ~0.16 against negatives' spread of 1 / sqrt(d): at scale 100 the loss is of order 1,
        # as a trained CLIP's at large batch (with clearer positives it vanishes and relative errors blow up).
        image, text, _, _ = jax.jit(_inputs(batch, args.dim, noise=6.0))(jax.random.PRNGKey(0))
        logit_scale = jnp.float32(np.log(args.accuracy_scale))
        loss64, grad64 = _float64_softmax(image, text, logit_scale)
        for implementation, dtype in itertools.product(implementations, args.matmul_dtypes.split(",")):
            if implementation in DISTRIBUTED:
                continue  # the same numbers as tiled (tests/test_distributed_losses.py)
            step, _, _ = _setup(implementation, argparse.Namespace(**{**vars(args), "kind": "softmax"}), dtype)
            loss, (grad, *_) = jax.jit(step)(image, text, logit_scale, jnp.float32(0.0))
            loss_error = abs(float(loss) - loss64) / abs(loss64)
            grad_error = np.max(np.abs(np.asarray(grad, np.float64) - grad64)) / np.max(np.abs(grad64))
            row = f"| {implementation} | {dtype} | {batch:,} | {loss64:.4f} | {loss_error:.1e} | {grad_error:.1e} |"
            print(row, flush=True)


def largest_batch(implementation: str, budget: float, args) -> int:
    """Largest batch (a multiple of 1024) whose compiled footprint per device fits `budget` bytes."""

    def fits(batch):
        return _footprint(_compile(implementation, batch, args))[1] <= budget

    granule = 1024
    low, high = 0, granule
    while fits(high):
        low, high = high, high * 2
        if high > 2**26:  # 64M examples: far beyond any batch in this field
            return low
    while high - low > granule:
        middle = (low + high) // 2 // granule * granule
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def budget_table(implementations: list[str], args) -> None:
    """(c) The largest batch each implementation compiles within --budget_gib (per device)."""
    print(f"\n(c) {args.kind}: largest batch whose temporaries + inputs + gradients fit {args.budget_gib:g} GiB")
    print("| implementation | largest B | per-device footprint GiB |")
    print("|---|---:|---:|")
    for implementation in implementations:
        batch = largest_batch(implementation, args.budget_gib * GIB, args)
        footprint = _footprint(_compile(implementation, batch, args))[1] if batch else 0
        print(f"| {implementation} | {batch:,} | {_gib(footprint)} |", flush=True)


def main(args) -> None:
    implementations = args.implementations.split(",")
    if args.jax_default_matmul_precision:
        jax.config.update("jax_default_matmul_precision", args.jax_default_matmul_precision)
    if args.child:
        _child(args.child[0], int(args.child[1]), args, args.child[2])
        return
    if not args.skip_memory_table:
        memory_table(implementations, args)
    if args.execute:
        execution_table(implementations, [int(b) for b in args.execute.split(",")], args)
    if args.budget_gib > 0:
        budget_table(implementations, args)
    if args.accuracy:
        accuracy_table(implementations, [int(b) for b in args.accuracy.split(",")], args)


if __name__ == "__main__":
    main(ARGS)
