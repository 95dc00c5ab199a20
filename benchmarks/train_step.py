"""Train-step throughput and model FLOPs utilisation (MFU) of a config, beside open_clip (PyTorch).

    python benchmarks/train_step.py --config=configs/clip.py --config.batch_size=64 \
        --config.model.image.conv_stem_depth=0
    python benchmarks/train_step.py --config=configs/clip.py:size=B/16 --config.batch_size=256 \
        --config.model.dtype=bfloat16                                    # on a GPU
    python benchmarks/train_step.py --config=configs/lm.py --decoder_preset=gpt2_small \
        --attention_variants=dense,xla,cudnn --remat_variants=false,true  # a decoder's kernels side by side

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

A decoder config (config.model.kind 'decoder', configs/lm.py) times the language model's steps (`lm` objective,
random tokens filling the context) for every pair of --attention_variants and --remat_variants in one process,
alternating them as above, each against the first: examples/s, tokens/s and MFU, its model FLOPs in closed form
(training/flops.py decoder_train_flops, the same count as on the jaxpr). --decoder_preset sets a GPU-sized
decoder (DECODER_PRESETS); on a CPU backend it keeps the preset's style at a size that steps in seconds.
"""

from __future__ import annotations

import itertools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from configs import common  # noqa: E402
from configs.errors import ConfigError  # noqa: E402
from configs.lm import llama_style  # noqa: E402
from interop.torchvision_ops import declare_torchvision_ops  # noqa: E402
from launch.sweep import apply_overrides  # noqa: E402
from losses.objectives import get_objective  # noqa: E402
from models.two_tower import build_model  # noqa: E402
from training import hlo_text  # noqa: E402
from training.flops import decoder_train_flops, matmul_flops  # noqa: E402
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
_ATTENTIONS = flags.DEFINE_list(
    "attention_variants", [], "A decoder config: the config.model.attention values to time in this run (e.g. "
    "dense,xla,cudnn); the first variant is the baseline. Empty: the config's own.",
)  # fmt: skip
_REMATS = flags.DEFINE_list(
    "remat_variants", [], "A decoder config: the config.model.remat values to time (false,true), each with every "
    "--attention_variants value. Empty: the config's own.",
)  # fmt: skip
_VOCAB = 1000

# GPT-2 small's shape (124M parameters with GPT-2's vocabulary padded to 50,304) and a Llama-style decoder of the
# same width and depth (configs/lm.py llama_style: RMSNorm, RoPE, SwiGLU, no biases, untied; 4 key-value heads,
# Llama 2's vocabulary); each a GPU-meaningful batch of 32 x 1,024 tokens in bf16.
_GPU_SIZE = {
    "model.decoder.width": 768, "model.decoder.depth": 12, "model.decoder.heads": 12, "model.decoder.max_len": 1024,
    "batch_size": 32, "model.dtype": "bfloat16",
}  # fmt: skip
_CPU_SIZE = {
    "model.decoder.width": 64, "model.decoder.depth": 2, "model.decoder.heads": 4, "model.decoder.max_len": 64,
    "batch_size": 8, "model.dtype": "float32",
}  # fmt: skip
DECODER_PRESETS = {
    "gpt2_small": {"model.decoder.vocab_size": 50304},
    "llama_small": {"model.decoder.vocab_size": 32000, "model.decoder.kv_heads": 4},
}
_PRESET = flags.DEFINE_enum(
    "decoder_preset", "", ["", *DECODER_PRESETS],
    "A decoder config's model, batch and dtype from DECODER_PRESETS (at _CPU_SIZE on a CPU backend); "
    "--config.* flags still override it. Empty: the config's own.",
)  # fmt: skip


def decoder_preset(name: str, cpu: bool) -> dict[str, object]:
    """Flat overrides {"model.decoder.width": 768, ...} of DECODER_PRESETS[name]: every decoder switch (GPT-2's,
    or llama_style's for a llama_ preset), then the GPU size, or _CPU_SIZE when `cpu`."""
    decoder = common.get_base_config(None).model.decoder
    if name.startswith("llama"):
        llama_style(decoder)
    size = _CPU_SIZE if cpu else {**_GPU_SIZE, **DECODER_PRESETS[name]}
    return {**{f"model.decoder.{key}": value for key, value in decoder.items()}, **size}


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
    if config.model.kind == "decoder":  # context + 1 real tokens a row: the model reads [:-1], predicts [1:]
        vocab, length = config.model.decoder.vocab_size or _VOCAB, config.model.decoder.max_len + 1
        return {"text": rng.integers(1, vocab, size=(config.batch_size, length)).astype(np.int32)}
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
    """Model FLOPs per step: 3 x the forward loss's matmul FLOPs, with the towers' attention counted as `xla`'s;
    a decoder's in closed form (training/flops.py decoder_train_flops: the same count).

    The flash kernels (`cudnn`, `pallas`) compute the same products inside calls whose jaxpr hides them (a
    kernel's loop body counts once), so counting their own jaxpr would drop the attention matmuls from MFU.
    """
    if config.model.kind == "decoder":
        rows, length = batch["text"].shape
        return decoder_train_flops(build_model(config, _VOCAB), rows, length - 1)
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
    if _PRESET.value or config.model.kind == "decoder":
        return decoder_main(config)
    if _ATTENTIONS.value or _REMATS.value:
        raise app.UsageError("--attention_variants and --remat_variants time a decoder config (configs/lm.py).")
    peak, peak_source = peak_tflops(config)
    runners = {"jax (this repo)": JaxStep(config)}
    skipped = ""
    if _OPEN_CLIP.value:
        try:
            runners["open_clip (PyTorch)"] = OpenClipStep(config)
        except (ImportError, ValueError) as e:
            skipped = f"open_clip skipped: {e}"
    best = best_seconds_per_step(runners)
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


def decoder_variants(config) -> dict[str, object]:
    """{name: validated config, or the ConfigError that refused it} for each --remat_variants x
    --attention_variants pair (the config's own value where a list is empty), the first the baseline."""
    attentions = _ATTENTIONS.value or [config.model.attention]
    if unknown := [value for value in _REMATS.value if value.lower() not in ("true", "false")]:
        raise app.UsageError(f"--remat_variants takes true and false, not {unknown}.")
    remats = [value.lower() == "true" for value in _REMATS.value] or [config.model.remat]
    variants = {}
    for remat, attention in itertools.product(remats, attentions):
        name = f"{attention}, remat {'on' if remat else 'off'}"
        try:
            variants[name] = apply_overrides(config, {"model.attention": attention, "model.remat": remat})
        except ConfigError as e:
            variants[name] = e
    return variants


def decoder_main(config) -> None:
    """Times each decoder variant (decoder_variants) in one process, best of --repeats, alternating; prints a table
    with a row per variant, a variant that fails to build or compile included."""
    if config.model.kind != "decoder":
        raise app.UsageError("--decoder_preset needs a decoder config: --config=configs/lm.py.")
    if _PRESET.value:  # the preset, then the command line's --config.* flags over it
        overrides = config_flags.get_override_values(flags.FLAGS["config"])
        config = apply_overrides(config, {**decoder_preset(_PRESET.value, jax.default_backend() == "cpu"), **overrides})
    peak = peak_tflops(config)
    variants, runners, failed = decoder_variants(config), {}, {}
    for name, variant in variants.items():
        start = time.perf_counter()
        try:
            if isinstance(variant, Exception):
                raise variant
            runners[name] = JaxStep(variant)
            print(f"{name}: compiled and warmed up in {time.perf_counter() - start:.1f} s", flush=True)
        except Exception as e:  # noqa: BLE001 - a kernel that refuses the shape is a row of the table, not the end
            failed[name] = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:150]}".replace("|", "/")
    print_decoder_table(config, peak, list(variants), best_seconds_per_step(runners), failed)
    for name, runner in runners.items():
        print(f"{name}: {runner.state_copies()}")
    if _PROFILE.value and runners:
        print_profile(*next(iter(runners.values())).profile(_PROFILE.value, _PROFILE_STEPS.value), _PROFILE.value)


def print_decoder_table(config, peak: tuple[float, str], names: list[str], best: dict, failed: dict) -> None:
    """The decoder's shape and a row per variant of `names`: its best s/step (`best`) or why it `failed`."""
    d, tokens = config.model.decoder, config.batch_size * config.model.decoder.max_len
    flops = decoder_train_flops(build_model(config, _VOCAB), config.batch_size, d.max_len)
    print(
        f"{jax.devices()[0].device_kind} x {jax.device_count()}; decoder {_PRESET.value or 'of the config'}: "
        f"w{d.width} d{d.depth} heads {d.heads} kv {d.kv_heads or d.heads} L{d.max_len} "
        f"vocab {d.vocab_size or _VOCAB}, {d.norm}, {d.position}, {d.mlp}, bias {d.bias}, tied {d.tie_embeddings}; "
        f"batch {config.batch_size} ({tokens} tokens), {config.model.dtype}; "
        f"{flops / tokens / 1e9:.4g} GFLOP/token (model); peak {peak[0]:.2f} TFLOP/s per device ({peak[1]})"
        + ("; XLA:GPU command buffers off (--profile_dir)" if _PROFILE.value else "")
    )
    baseline = next(iter(best), None)
    print(
        f"\n| attention, remat | ms/step | examples/s | tokens/s | model TFLOP/s | MFU | vs {baseline} |"
        "\n|---|---|---|---|---|---|---|"
    )
    for name in names:
        if name in failed:
            print(f"| {name} | fails: {failed[name]} | | | | | |")
            continue
        seconds, achieved = best[name], flops / best[name] / 1e12
        print(
            f"| {name} | {seconds * 1e3:.1f} | {config.batch_size / seconds:.0f} | {tokens / seconds:.0f} | "
            f"{achieved:.3f} | {achieved / (peak[0] * jax.device_count()):.1%} | {best[baseline] / seconds:.2f}x |"
        )


def best_seconds_per_step(runners: dict) -> dict[str, float]:
    """{name: best s/step} of each runner over --repeats repeats of --steps steps, the runners alternating."""
    best = {name: float("inf") for name in runners}
    for _ in range(_REPEATS.value):
        for name, runner in runners.items():
            best[name] = min(best[name], runner.run(_STEPS.value) / _STEPS.value)
    return best


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
