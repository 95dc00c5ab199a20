"""Compile the full-size train step for a big mesh without running it, and report per-device memory.

`python main.py --config=configs/clip.py:size=B/16 --workdir=/tmp/dry --dry_run` starts jax on
config.dry_run.devices fake CPU devices, builds the config's mesh over them, lowers and compiles the
sharded train step for abstract inputs (nothing is allocated or run), and prints what one device
holds: parameters, optimizer state, the batch, and XLA's temporaries (activations and gradients).
It fails with one sentence when that exceeds config.dry_run.device_memory_gib.

The numbers are XLA's CPU compilation of the same partitioned program; the TPU and GPU compilers
fuse and schedule differently, so expect their peaks to differ by some tens of percent.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import ml_collections

from losses.objectives import get_objective
from models.two_tower import build_model
from training import mesh as mesh_lib
from training.optimizer import learning_rate_schedule, make_optimizer
from training.partitioning import jit_train_step, mesh_from_config, state_shardings
from training.sharding import bytes_per_device
from training.validation import ConfigError, validate_batch_division

GIB = 2**30


def use_fake_devices(count: int) -> None:
    """Makes jax start on `count` CPU devices; call before anything starts jax's backend."""
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", count)


def abstract_batch(config: ml_collections.ConfigDict, mesh) -> dict[str, jax.ShapeDtypeStruct]:
    """ShapeDtypeStructs of one global batch (images and caption tokens), split over the batch axes."""
    side, sharding = config.data.image_size, mesh_lib.batch_sharding(mesh)
    return {
        "image": jax.ShapeDtypeStruct((config.batch_size, side, side, 3), jnp.float32, sharding=sharding),
        "text": jax.ShapeDtypeStruct((config.batch_size, config.model.text.max_len), jnp.int32, sharding=sharding),
    }


def dry_run(config: ml_collections.ConfigDict) -> dict[str, float]:
    """Compiles config's train step on config.dry_run.devices devices; returns per-device GiB by kind.

    Raises ConfigError when the devices are too few or the step needs more than the stated memory.
    """
    count = config.dry_run.devices
    if jax.device_count() < count:
        raise ConfigError(
            f"The dry run needs {count} devices but jax started with {jax.device_count()}; run it through "
            "main.py --dry_run, which starts jax on fake CPU devices, before anything else uses jax."
        )
    objective = get_objective(config.objective)
    if objective.batch_fields is not None:
        raise ConfigError(
            f"Objective {config.objective!r} reads batch fields beyond images and captions, which the dry run "
            "does not build; dry-run a config with objective clip or siglip of the same model size."
        )
    mesh = mesh_from_config(config, jax.devices()[:count])
    validate_batch_division(config.batch_size, mesh_lib.batch_device_count(mesh), 1, config.microbatches)
    model = build_model(config, config.text.vocab_size)
    optimizer = make_optimizer(config)
    abstract, shardings = state_shardings(config, model, optimizer, objective, mesh)
    state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
    batch = abstract_batch(config, mesh)
    step = jit_train_step(config, model, objective, optimizer, learning_rate_schedule(config), mesh, shardings)
    start = time.time()
    with jax.set_mesh(mesh):
        compiled = step.lower(state, batch).compile()
    compile_s = time.time() - start
    memory = compiled.memory_analysis()
    params = bytes_per_device(abstract.params, shardings.params)
    opt_state = bytes_per_device(abstract.opt_state, shardings.opt_state)
    batch_bytes = bytes_per_device(batch, jax.tree.map(lambda b: b.sharding, batch))
    # Arguments and outputs alias (the state is donated), so the peak is arguments + temporaries +
    # the outputs that do not reuse an argument's buffer.
    peak = memory.argument_size_in_bytes + memory.temp_size_in_bytes + memory.output_size_in_bytes
    peak -= memory.alias_size_in_bytes
    report = {
        "params_gib": params / GIB,
        "optimizer_state_gib": opt_state / GIB,
        "batch_gib": batch_bytes / GIB,
        "other_state_gib": (memory.argument_size_in_bytes - params - opt_state - batch_bytes) / GIB,
        "activations_and_temporaries_gib": memory.temp_size_in_bytes / GIB,
        "peak_gib": peak / GIB,
        "compile_s": compile_s,
        "flops_per_device": float((compiled.cost_analysis() or {}).get("flops", 0.0)),
    }
    print(format_report(config, mesh, report), flush=True)
    if report["peak_gib"] > config.dry_run.device_memory_gib:
        raise ConfigError(
            f"The train step needs {report['peak_gib']:.1f} GiB per device, more than "
            f"config.dry_run.device_memory_gib ({config.dry_run.device_memory_gib:g}); shard more "
            "(config.mesh.fsdp), set config.model.remat=True or config.model.dtype=bfloat16, or split the "
            "batch with config.microbatches."
        )
    return report


def format_report(config: ml_collections.ConfigDict, mesh, report: dict[str, float]) -> str:
    image, text = config.model.image, config.model.text
    lines = [
        f"Dry run: ViT width {image.width} depth {image.depth} patch {image.patch_size} at {config.data.image_size} px "
        f"+ text width {text.width} depth {text.depth}; global batch {config.batch_size}, "
        f"microbatches {config.microbatches}, dtype {config.model.dtype}, remat {config.model.remat}, "
        f"loss {config.loss.implementation}",
        f"Mesh {dict(mesh.shape)} ({mesh.size} devices); compiled in {report['compile_s']:.0f} s",
        "",
        "| per device | GiB |",
        "|---|---|",
    ]
    for key in ("params", "optimizer_state", "batch", "other_state", "activations_and_temporaries", "peak"):
        lines.append(f"| {key.replace('_', ' ')} | {report[key + '_gib']:.3f} |")
    lines.append(f"| budget (config.dry_run.device_memory_gib) | {config.dry_run.device_memory_gib:g} |")
    return "\n".join(lines)
