"""Train-step throughput and model FLOPs utilisation (MFU) of a config, beside open_clip (PyTorch).

    python benchmarks/train_step.py --config=configs/clip.py --config.batch_size=64 \
        --config.model.image.conv_stem_depth=0
    python benchmarks/train_step.py --config=configs/clip.py:size=B/16 --config.batch_size=256 \
        --config.model.dtype=bfloat16                                    # on a GPU

Both sides train the same two-tower shapes (widths, depths, heads, patch, tokens, embedding size) with
AdamW on random data; open_clip runs when `open_clip` and `torch` import (ENVIRONMENT.md), in bf16
autocast when the config's dtype is bfloat16 and a GPU is there. open_clip has no convolutional
stem, so the comparison needs `--config.model.image.conv_stem_depth=0` (the tiny default has 3).

Model FLOPs per step = 3 x the forward pass's matmul and convolution FLOPs, counted on its jaxpr
(training/flops.py; XLA's cost analysis misses the matmuls a GPU hands to cuBLAS), the usual "backward
= 2 x forward" convention, so remat's recomputation does not count as useful work. MFU divides the
achieved model FLOP/s by a peak: --peak_tflops if given, else the chip's dense bf16 (or fp32) peak
from PEAK_TFLOPS, else on a CPU the fp32 matmul rate measured in this run (a 2048^3 jnp.dot), so
there it reads "fraction of what this CPU's best matmul achieves".
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from interop.torchvision_ops import declare_torchvision_ops  # noqa: E402
from losses.objectives import get_objective  # noqa: E402
from models.two_tower import build_model  # noqa: E402
from training import hlo_text  # noqa: E402
from training.flops import matmul_flops  # noqa: E402
from training.mesh import global_batch  # noqa: E402
from training.op_profile import by_layer_kind, categorize_hlo, split_command_buffers, summarize_trace  # noqa: E402
from training.optimizer import learning_rate_schedule, make_optimizer  # noqa: E402
from training.partitioning import create_train_state, jit_train_step, mesh_from_config, state_shardings  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", "configs/clip.py", "Config file, optionally with ':arg=value'.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps per repeat.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repeats, JAX and open_clip alternating; the best is reported.")
_PEAK = flags.DEFINE_float("peak_tflops", 0.0, "Peak TFLOP/s of one device for MFU; 0 = from the device kind.")
_OPEN_CLIP = flags.DEFINE_bool("open_clip", True, "Also time open_clip when it imports.")
_PROFILE = flags.DEFINE_string(
    "profile_dir",
    "",
    "Also trace --profile_steps JAX steps into this folder and print their device time per kind of op; "
    "turns XLA:GPU's command buffers (CUDA graphs) off for the whole run, so that each kernel names its op.",
)
_PROFILE_STEPS = flags.DEFINE_integer("profile_steps", 5, "Steps traced with --profile_dir.")
_VOCAB = 1000

# Dense (no sparsity) peak TFLOP/s per chip from the vendors' data sheets: (bf16, fp32).
PEAK_TFLOPS = {
    "H100": (989.0, 67.0),
    "H200": (989.0, 67.0),
    "A100": (312.0, 19.5),
    "TPU v4": (275.0, 275.0 / 2),
    "TPU v5 lite": (197.0, 197.0 / 2),
    "TPU v5p": (459.0, 459.0 / 2),
}


def _batch(config, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    side, length = config.data.image_size, config.model.text.max_len
    tokens = rng.integers(1, _VOCAB, size=(config.batch_size, length)).astype(np.int32)
    tokens[:, -1] = _VOCAB - 1  # end of text last, as open_clip's argmax pooling expects the top id
    return {"image": rng.normal(size=(config.batch_size, side, side, 3)).astype(np.float32), "text": tokens}


def measured_matmul_tflops(size: int = 2048, repeats: int = 5) -> float:
    """fp32 TFLOP/s of one jitted [size, size] @ [size, size] on the default device, best of `repeats`."""
    x = jnp.ones((size, size), jnp.float32)
    dot = jax.jit(lambda a: a @ a)
    dot(x).block_until_ready()
    best = min(_timed(lambda: dot(x).block_until_ready()) for _ in range(repeats))
    return 2 * size**3 / best / 1e12


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def peak_tflops(config) -> tuple[float, str]:
    """(peak TFLOP/s of one device, where the number comes from)."""
    if _PEAK.value:
        return _PEAK.value, "--peak_tflops"
    kind = jax.devices()[0].device_kind
    for name, (bf16, fp32) in PEAK_TFLOPS.items():
        if name.lower() in kind.lower():
            return (bf16 if config.model.dtype == "bfloat16" else fp32), f"{kind} data sheet, {config.model.dtype}"
    return measured_matmul_tflops(), f"measured fp32 2048^3 matmul on {kind}"


def model_flops(config, params, batch) -> float:
    """Model FLOPs per step: 3 x the forward loss's matmul FLOPs, with the towers' attention counted as `xla`'s.

    The flash kernels (`cudnn`, `pallas`) compute the same products inside calls whose jaxpr hides them (a
    kernel's loop body counts once), so counting their own jaxpr would drop the attention matmuls from MFU.
    """
    counted = config.copy_and_resolve_references()
    counted.model.attention = "xla"
    model, objective = build_model(counted, _VOCAB), get_objective(counted.objective)

    def forward(params, batch):
        return objective.loss(params, batch, {}, jax.random.PRNGKey(0), model=model, config=counted)[0]

    return 3 * matmul_flops(forward, params, batch)


class JaxStep:
    """The repo's sharded, jitted train step on every local device."""

    def __init__(self, config):
        self.config = config
        mesh = mesh_from_config(config)
        model, objective = build_model(config, _VOCAB), get_objective(config.objective)
        optimizer = make_optimizer(config)
        _, shardings = state_shardings(config, model, optimizer, objective, mesh)
        self.state = create_train_state(config, model, optimizer, objective, mesh)
        step = jit_train_step(config, model, objective, optimizer, learning_rate_schedule(config), mesh, shardings)
        self.mesh, self.batch = mesh, global_batch(_batch(config), mesh)

        with jax.set_mesh(mesh):
            self.step = step.lower(self.state, self.batch).compile()  # compiled once; its HLO feeds profile()
            self.model_flops = model_flops(config, self.state.params, self.batch)
        self.run(2)  # warm up

    def state_copies(self) -> str:
        """How much of the donated state the compiled step copies before updating it (issue 23: none is the goal)."""
        copied = hlo_text.copied_parameters(hlo_text.parse(self.step.as_text()))
        state_bytes = sum(x.nbytes for x in jax.tree.leaves(self.state))
        copied_bytes = sum(hlo_text.shape_bytes(p.shape) for p in copied)
        mib = copied_bytes / 2**20
        return f"the step copies {len(copied)} input arrays, {mib:.1f} MiB (state {state_bytes / 2**20:.1f} MiB)"

    def run(self, steps: int) -> float:
        with jax.set_mesh(self.mesh):
            start = time.perf_counter()
            for _ in range(steps):
                self.state, metrics = self.step(self.state, self.batch)
            jax.block_until_ready(metrics)
        return time.perf_counter() - start

    def profile(self, log_dir: str, steps: int):
        """(ops by name, [(category, s/step, distinct ops)], [(op, s/step)], wall s/step) over `steps` traced steps."""
        ops = categorize_hlo(self.step.as_text())
        with jax.profiler.trace(log_dir):
            seconds = self.run(steps)
        by_category, by_op = summarize_trace(log_dir, ops)
        return ops, [(c, t / steps, n) for c, t, n in by_category], [(o, t / steps) for o, t in by_op], seconds / steps


class OpenClipStep:
    """open_clip's CLIP of the same shapes, AdamW, ClipLoss; bf16 autocast on a GPU when asked."""

    def __init__(self, config):
        import torch

        declare_torchvision_ops(torch)
        import open_clip
        from open_clip.loss import ClipLoss

        image, text = config.model.image, config.model.text
        if image.conv_stem_depth:
            raise ValueError("open_clip has no convolutional stem; add --config.model.image.conv_stem_depth=0.")
        self.torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = open_clip.CLIP(
            embed_dim=config.model.embed_dim,
            vision_cfg=dict(
                layers=image.depth, width=image.width, head_width=image.width // image.heads,
                patch_size=image.patch_size, image_size=config.data.image_size, pool_type="tok",
            ),
            text_cfg=dict(
                context_length=text.max_len, vocab_size=_VOCAB, width=text.width, heads=text.heads, layers=text.depth,
            ),
        ).to(self.device)  # fmt: skip
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4, weight_decay=0.1)
        self.loss = ClipLoss()
        batch = _batch(config)
        self.images = torch.from_numpy(batch["image"]).permute(0, 3, 1, 2).contiguous().to(self.device)
        self.tokens = torch.from_numpy(batch["text"]).long().to(self.device)
        bf16 = config.model.dtype == "bfloat16" and self.device == "cuda"
        self.autocast = torch.autocast(self.device, dtype=torch.bfloat16, enabled=bf16)
        self.run(2)

    def run(self, steps: int) -> float:
        torch = self.torch
        start = time.perf_counter()
        for _ in range(steps):
            with self.autocast:
                image, text, scale = self.model(self.images, self.tokens)
                loss = self.loss(image, text, scale)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        if self.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def profile(self, steps: int, rows: int = 15) -> str:
        """torch.profiler's table of the `rows` costliest ops over `steps` steps (device time on a GPU)."""
        activities = [self.torch.profiler.ProfilerActivity.CPU]
        if self.device == "cuda":
            activities.append(self.torch.profiler.ProfilerActivity.CUDA)
        with self.torch.profiler.profile(activities=activities) as profiler:
            self.run(steps)
        key = "self_cuda_time_total" if self.device == "cuda" else "self_cpu_time_total"
        return profiler.key_averages().table(sort_by=key, row_limit=rows)


def main(argv):
    del argv
    if _PROFILE.value:
        split_command_buffers()  # before the backend starts: every GPU kernel then names its op in the trace
    config = _CONFIG.value
    peak, peak_source = peak_tflops(config)
    runners = {"jax (this repo)": JaxStep(config)}
    skipped = ""
    if _OPEN_CLIP.value:
        try:
            runners["open_clip (PyTorch)"] = OpenClipStep(config)
        except (ImportError, ValueError) as e:
            skipped = f"open_clip skipped: {e}"
    best = {name: float("inf") for name in runners}
    for _ in range(_REPEATS.value):
        for name, runner in runners.items():
            best[name] = min(best[name], runner.run(_STEPS.value) / _STEPS.value)
    flops = runners["jax (this repo)"].model_flops
    devices = jax.device_count()
    image, text = config.model.image, config.model.text
    print(
        f"{jax.devices()[0].device_kind} x {devices}; ViT w{image.width} d{image.depth} p{image.patch_size} "
        f"stem {image.conv_stem_depth} at {config.data.image_size} px + text w{text.width} d{text.depth} "
        f"L{text.max_len}; batch {config.batch_size}, {config.model.dtype}, remat {config.model.remat}, "
        f"attention {config.model.attention}, LayerNorm {config.model.layer_norm_dtype}; "
        f"{flops / config.batch_size / 1e9:.3f} GFLOP/example (model); "
        f"peak {peak:.2f} TFLOP/s per device ({peak_source}); {runners['jax (this repo)'].state_copies()}"
        + ("; XLA:GPU command buffers off (--profile_dir)" if _PROFILE.value else "")
    )
    print("\n| implementation | ms/step | examples/s | model TFLOP/s | MFU | vs open_clip |\n|---|---|---|---|---|---|")
    reference = best.get("open_clip (PyTorch)")
    for name, seconds in best.items():
        achieved = flops / seconds / 1e12
        ratio = f"{reference / seconds:.2f}x" if reference else "n/a"
        print(
            f"| {name} | {seconds * 1e3:.1f} | {config.batch_size / seconds:.0f} | {achieved:.3f} | "
            f"{achieved / (peak * devices):.1%} | {ratio} |"
        )
    if skipped:
        print(skipped)
    if _PROFILE.value:
        print_profile(*runners["jax (this repo)"].profile(_PROFILE.value, _PROFILE_STEPS.value), _PROFILE.value)
        if "open_clip (PyTorch)" in runners:
            steps = _PROFILE_STEPS.value
            print(f"\nopen_clip, {steps} steps (torch.profiler):\n{runners['open_clip (PyTorch)'].profile(steps)}")


def print_profile(ops, rows, top, wall: float, log_dir: str, count: int = 15) -> None:
    """The device time of one traced step by kind of op and its `count` costliest ops (training/op_profile.py)."""
    busy = sum(seconds for _, seconds, _ in rows)
    print(
        f"\nDevice time per step by kind of op, {wall * 1e3:.1f} ms/step traced, {busy * 1e3:.1f} ms in ops "
        f"(summed over streams or threads; the trace for TensorBoard or Perfetto is in {log_dir}):\n"
        "\n| ops | ms/step | share | distinct ops |\n|---|---|---|---|"
    )
    for category, seconds, distinct in rows:
        print(f"| {category} | {seconds * 1e3:.1f} | {seconds / busy:.1%} | {distinct} |")
    print("\n| layer (all blocks) | ms/step | share | ops |\n|---|---|---|---|")
    for kind, seconds, distinct in by_layer_kind(top, ops)[:count]:
        print(f"| {kind} | {seconds * 1e3:.2f} | {seconds / busy:.1%} | {distinct} |")
    print("\n| op | kind | ms/step | share | from |\n|---|---|---|---|---|")
    for op, seconds in top[:count]:
        print(f"| {op} | {ops[op].category} | {seconds * 1e3:.2f} | {seconds / busy:.1%} | {ops[op].source[-90:]} |")


if __name__ == "__main__":
    app.run(main)
