"""Compile the full-size train step for a big mesh without running it, and report per-device memory.

`python main.py --config=configs/clip.py:size=B/16 --workdir=/tmp/dry --dry_run` starts jax on
config.dry_run.devices fake CPU devices, builds the config's mesh over them, lowers and compiles the
sharded train step for abstract inputs (nothing is allocated or run), and prints what one device
holds: parameters, optimizer state, the batch, and XLA's temporaries (activations and gradients),
and what it sends per step through its collectives (training/collectives.py). It fails with one
sentence when the memory exceeds config.dry_run.device_memory_gib; when the state and batch alone
exceed it, before compiling.

The numbers are XLA's CPU compilation of the same partitioned program; the TPU and GPU compilers
fuse and schedule differently, so expect their peaks to differ by some tens of percent.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from configs.common import VIDEO_DATASETS
from configs.errors import ConfigError
from input_pipeline import shape_edits, shapes
from input_pipeline.shape_edits import EDIT_DATASET
from losses.objectives import get_objective
from models.two_tower import build_model
from training import mesh as mesh_lib
from training.collectives import collective_traffic
from training.objective_inputs import batch_fields
from training.optimizer import learning_rate_schedule, make_optimizer
from training.partitioning import FAST_COMPILE, jit_train_step, mesh_from_config, state_shardings
from training.sharding import bytes_per_device
from training.validation import validate_batch_division

GIB = 2**30
# XLA's CPU compiler erases the optimization barriers that keep jax.checkpoint's recomputation apart
# from the forward pass, then merges the two: remat would save nothing in the CPU memory report,
# though it does on TPU and GPU (whose compilers keep the barriers until after scheduling). Keeping
# that pass off makes the CPU compile report what remat really saves (ViT-B/16 at 128 examples per
# device: 34.4 GiB of activations without remat, 4.7 with; docs/scaling.md "Dry run").
DRY_RUN_COMPILE = {**FAST_COMPILE, "xla_disable_hlo_passes": "cse_barrier_expander"}
REPORT_ROWS = ("params", "optimizer_state", "other_state", "batch", "activations_and_temporaries", "peak")


def use_fake_devices(count: int) -> None:
    """Makes jax start on `count` CPU devices; call before anything starts jax's backend."""
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", count)


def abstract_batch(config: ml_collections.ConfigDict, mesh, objective=None) -> dict[str, jax.ShapeDtypeStruct]:
    """ShapeDtypeStructs of one global batch (images, caption tokens and `objective`'s batch fields),
    split over the batch axes (clips instead of images for video data). The fields' shapes come from one shapes
    record: an objective's fields (sub-captions, negatives, raw captions) have the same shapes whatever the data."""
    side, sharding = config.data.image_size, mesh_lib.batch_sharding(mesh)
    if config.model.kind in ("decoder", "captioner"):  # text tokens (BOS .. EOS), and a captioner's CLIP embedding
        captioner = config.model.kind == "captioner"
        length = config.model.decoder.max_len + 1 - (config[config.objective].prefix_tokens if captioner else 0)
        batch = {"text": jax.ShapeDtypeStruct((config.batch_size, length), jnp.int32, sharding=sharding)}
        if captioner:
            features = (config.batch_size, config.model.embed_dim)
            batch["prefix_features"] = jax.ShapeDtypeStruct(features, jnp.float32, sharding=sharding)
        return batch
    frames = (config.model.video_frames,) if config.data.name in VIDEO_DATASETS else ()  # clips: [B, T, S, S, 3]
    batch = {
        "video" if frames else "image": jax.ShapeDtypeStruct(
            (config.batch_size, *frames, side, side, 3), jnp.uint8, sharding=sharding
        ),
        "text": jax.ShapeDtypeStruct((config.batch_size, config.model.text.max_len), jnp.int32, sharding=sharding),
    }
    make_fields = batch_fields(config) if objective is not None else None
    if make_fields is not None:
        # At the run's image size: a field may be per pixel (DenseCLIP's segmentation).
        if config.data.name == EDIT_DATASET:  # an editing pair: its edited image and wrong instructions
            record = shape_edits.record(config.seed, "train", 0, image_size=side)
        else:
            record = shapes.make_example(config.seed, "train", 0, image_size=side)
        encode = lambda texts: np.zeros((len(texts), config.model.text.max_len), np.int32)  # noqa: E731
        fields = make_fields(record, np.random.default_rng(0), encode)
        for key, value in fields.items():
            value = jnp.asarray(value)  # the dtype the pipeline's arrays arrive with (no float64)
            batch[key] = jax.ShapeDtypeStruct((config.batch_size, *value.shape), value.dtype, sharding=sharding)
    return batch


def memory_error(needed_gib: float, budget_gib: float, what: str, config=None) -> str | None:
    """The one-sentence error when `needed_gib` per device exceeds `budget_gib`, else None; it names the
    memory knobs that `config` (when given) has not turned yet."""
    if needed_gib <= budget_gib:
        return None
    knobs = ["shard more (config.mesh.fsdp)"]
    if config is None or not config.model.remat:
        knobs.append("set config.model.remat=True")
    if config is None or config.model.dtype != "bfloat16":
        knobs.append("set config.model.dtype=bfloat16")
    knobs.append("split the batch with config.microbatches")
    return (
        f"The train step needs {what}{needed_gib:.3g} GiB per device, more than "
        f"config.dry_run.device_memory_gib ({budget_gib:g}); {', '.join(knobs[:-1])}, or {knobs[-1]}."
    )


class Plan(NamedTuple):
    """What the dry run compiles: the mesh, model, objective and optimizer of a config, the abstract
    train state with its shardings, and an abstract global batch."""

    mesh: jax.sharding.Mesh
    model: Any
    objective: Any
    optimizer: Any
    abstract_state: Any  # TrainState of ShapeDtypeStructs
    shardings: Any  # TrainState of NamedShardings
    batch: dict[str, jax.ShapeDtypeStruct]


def plan(config: ml_collections.ConfigDict) -> Plan:
    """Builds everything abstract (no compile, nothing allocated); ConfigError when the devices are too
    few or the batch does not divide."""
    count = config.dry_run.devices
    if jax.device_count() < count:
        raise ConfigError(
            f"The dry run needs {count} devices but jax started with {jax.device_count()}; run it through "
            "main.py --dry_run, which starts jax on fake CPU devices, before anything else uses jax."
        )
    objective = get_objective(config.objective)
    mesh = mesh_from_config(config, jax.devices()[:count])
    validate_batch_division(config.batch_size, mesh_lib.batch_device_count(mesh), 1, config.microbatches)
    if config.model.attention in ("cudnn", "pallas"):
        # cuDNN's kernel lowers only for a GPU, and Pallas' would compile here as its CPU interpreter. XLA's
        # attention computes the same function but keeps the [B, heads, N, N] weights that flash attention
        # recomputes: the activations reported are an upper bound.
        print(f"Dry run: config.model.attention={config.model.attention!r} compiles for a GPU only; compiled with "
              "'xla' (an upper bound).")  # fmt: skip
        config = config.copy_and_resolve_references()
        config.model.attention = "xla"
    model = build_model(config, config.text.vocab_size)
    optimizer = make_optimizer(config)
    abstract, shardings = state_shardings(config, model, optimizer, objective, mesh)
    return Plan(mesh, model, objective, optimizer, abstract, shardings, abstract_batch(config, mesh, objective))


def resident_report(p: Plan) -> dict[str, float]:
    """Per-device GiB of the step's inputs, known without compiling: params, optimizer_state,
    other_state (step, rng, the objective's extra state) and batch, as "<row>_gib"."""
    params = bytes_per_device(p.abstract_state.params, p.shardings.params)
    opt_state = bytes_per_device(p.abstract_state.opt_state, p.shardings.opt_state)
    state = bytes_per_device(p.abstract_state, p.shardings)
    batch = bytes_per_device(p.batch, jax.tree.map(lambda b: b.sharding, p.batch))
    return {
        "params_gib": params / GIB,
        "optimizer_state_gib": opt_state / GIB,
        "other_state_gib": (state - params - opt_state) / GIB,
        "batch_gib": batch / GIB,
    }


def dry_run(config: ml_collections.ConfigDict) -> dict[str, float]:
    """Compiles config's train step on config.dry_run.devices devices; returns per-device GiB by kind
    ("<row>_gib" for REPORT_ROWS), compile_s, flops_per_device and the collectives' GiB sent per device
    per step ("sent_gib", "sent_<opcode>_gib", "sent_is_lower_bound"), and prints them as a table.

    Raises ConfigError as plan() does, or when the step needs more than config.dry_run.device_memory_gib.
    """
    p, budget = plan(config), config.dry_run.device_memory_gib
    report = resident_report(p)
    # A config whose inputs alone do not fit fails in seconds instead of after a long compile.
    error = memory_error(sum(report.values()), budget, "at least (state and batch alone) ", config)
    if error:
        print(format_report(config, p.mesh, report), flush=True)
        raise ConfigError(error)

    state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), p.abstract_state, p.shardings)
    schedule = learning_rate_schedule(config)
    step = jit_train_step(config, p.model, p.objective, p.optimizer, schedule, p.mesh, p.shardings, DRY_RUN_COMPILE)
    start = time.time()
    with jax.set_mesh(p.mesh):
        compiled = step.lower(state, p.batch).compile()
    memory = compiled.memory_analysis()
    # Arguments and outputs alias (the state is donated), so the peak is arguments + temporaries +
    # the outputs that do not reuse an argument's buffer.
    peak = memory.argument_size_in_bytes + memory.temp_size_in_bytes + memory.output_size_in_bytes
    report.update(
        activations_and_temporaries_gib=memory.temp_size_in_bytes / GIB,
        peak_gib=(peak - memory.alias_size_in_bytes) / GIB,
        compile_s=time.time() - start,
        flops_per_device=float((compiled.cost_analysis() or {}).get("flops", 0.0)),
    )
    traffic = collective_traffic(compiled.as_text(), p.mesh.size)
    report.update({f"sent_{kind}_gib": b / GIB for kind, b in traffic.bytes_by_kind.items()})
    report.update(sent_gib=traffic.total / GIB, sent_is_lower_bound=float(traffic.lower_bound))
    print(format_report(config, p.mesh, report), flush=True)
    error = memory_error(report["peak_gib"], budget, "", config)
    if error:
        raise ConfigError(error)
    return report


def format_report(config: ml_collections.ConfigDict, mesh, report: dict[str, float]) -> str:
    """A Markdown table of the report's per-device GiB; rows not measured (no compile) are left out."""
    image, text = config.model.image, config.model.text
    compiled = f"compiled in {report['compile_s']:.0f} s" if "compile_s" in report else "not compiled"
    model = (
        f"ViT width {image.width} depth {image.depth} patch {image.patch_size} at {config.data.image_size} px "
        f"+ text width {text.width} depth {text.depth}"
    )
    if config.model.kind in ("decoder", "captioner"):
        d = config.model.decoder
        model = f"{config.model.kind} width {d.width} depth {d.depth} context {d.max_len}"
    lines = [
        f"Dry run: {model}; global batch {config.batch_size}, "
        f"microbatches {config.microbatches}, dtype {config.model.dtype}, remat {config.model.remat}, "
        f"loss {config.loss.implementation}",
        f"Mesh {dict(mesh.shape)} ({mesh.size} devices); {compiled}",
        "",
        "| per device | GiB |",
        "|---|---|",
    ]
    lines += [
        f"| {row.replace('_', ' ')} | {report[row + '_gib']:.3f} |" for row in REPORT_ROWS if row + "_gib" in report
    ]
    lines.append(f"| budget (config.dry_run.device_memory_gib) | {config.dry_run.device_memory_gib:g} |")
    if "sent_gib" in report:
        kinds = [k for k in report if k.startswith("sent_") and k.endswith("_gib") and k != "sent_gib"]
        parts = ", ".join(f"{k[5:-4]} {report[k]:.3f}" for k in sorted(kinds, key=lambda k: -report[k]))
        bound = "at least " if report["sent_is_lower_bound"] else ""
        lines.append(
            f"\nCollectives: {bound}{report['sent_gib']:.3f} GiB sent per device per step"
            + (f" ({parts})" if parts else "")
            + "; ring algorithms; XLA:CPU leaves the gradients' reduce-scatters as all-reduces (up to 2x their bytes)."
        )
    return "\n".join(lines)
