"""The train state created already sharded, and the train step jitted with explicit shardings."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from configs.errors import ConfigError
from losses.objectives import Objective
from training import mesh as mesh_lib
from training.sharding import tree_shardings
from training.train_state import TrainState
from training.train_step import train_step

# XLA options for a compile that is measured or run for a few steps only (the dry run, tests): LLVM at
# -O0 generates slower CPU code but compiles 2-4x faster here. Buffer assignment, and so the memory
# analysis, happens before LLVM: the tiny config's step on 8 devices reported the same argument,
# output, alias and temporary bytes at -O0 as at the default level.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def mesh_from_config(config: ml_collections.ConfigDict, devices: list | None = None) -> jax.sharding.Mesh:
    """The (data, fsdp, model) mesh of config.mesh over `devices` (default: all of them); ConfigError
    when the sizes do not fit the device count."""
    try:
        return mesh_lib.make_mesh({axis: config.mesh[axis] for axis in mesh_lib.MESH_AXES}, devices)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _init_params(config: ml_collections.ConfigDict, model, rng: jax.Array):
    if config.model.kind == "decoder":  # a language model: tokens only
        return model.init(rng, jnp.zeros((1, config.model.decoder.max_len), jnp.int32))["params"]
    if config.model.kind == "captioner":  # a CLIP embedding and tokens
        features = jnp.zeros((1, config.model.embed_dim), jnp.float32)
        return model.init(rng, features, jnp.zeros((1, config.model.decoder.max_len), jnp.int32))["params"]
    if config.model.kind == "mend":  # demonstrations, their length, and the query
        demos = jnp.zeros((1, config.mend.distiller.max_len), jnp.int32)
        query = jnp.zeros((1, config.model.decoder.max_len - config.mend.virtual_tokens), jnp.int32)
        return model.init(rng, demos, jnp.zeros((1,), jnp.int32), query)["params"]
    image_size, max_len = config.data.image_size, config.model.text.max_len
    images = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    tokens = jnp.zeros((1, max_len), jnp.int32)
    if config.model.kind == "denoiser":  # a noisy image, the source image, the step and the instruction
        return model.init(rng, images, images, jnp.zeros((1,), jnp.int32), tokens)["params"]
    return model.init(rng, images, tokens)["params"]


def abstract_params(config: ml_collections.ConfigDict, model):
    """The model's params as ShapeDtypeStructs (nothing computed)."""
    return jax.eval_shape(lambda rng: _init_params(config, model, rng), jax.random.PRNGKey(0))


def state_initializer(config: ml_collections.ConfigDict, model, optimizer, objective: Objective, inputs=None):
    """(rng, inputs) -> TrainState: fresh params (float32), optimizer state and objective state; `inputs`
    (training/objective_inputs.py: host arrays or their ShapeDtypeStructs) default to the ones given here."""

    def init(rng: jax.Array, inputs=inputs) -> TrainState:
        init_rng, state_rng = jax.random.split(rng)
        params = _init_params(config, model, init_rng)
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=optimizer.init(params),
            extra=objective.init_extra(params, config, inputs or {}),
            rng=state_rng,
        )

    return init


def state_shardings(
    config: ml_collections.ConfigDict, model, optimizer, objective: Objective, mesh, inputs=None
) -> Any:
    """(abstract TrainState of ShapeDtypeStructs, TrainState of NamedShardings) by the rules of training/sharding.py."""
    init = state_initializer(config, model, optimizer, objective)
    abstract = jax.eval_shape(init, jax.random.PRNGKey(0), inputs)
    return abstract, tree_shardings(abstract, mesh, config.mesh.min_shard_size)


def create_train_state(
    config: ml_collections.ConfigDict, model, optimizer, objective: Objective, mesh, compiler_options=None, inputs=None
) -> TrainState:
    """The initial TrainState, each leaf created directly in its shards (never whole on one device).
    `compiler_options`: XLA options for this one compile (see jit_train_step); `inputs`: the objective's
    host inputs (training/objective_inputs.py), jit arguments rather than constants baked into the program."""
    init = state_initializer(config, model, optimizer, objective)
    _, shardings = state_shardings(config, model, optimizer, objective, mesh, inputs)
    return jax.jit(init, out_shardings=shardings, compiler_options=compiler_options)(
        jax.random.PRNGKey(config.seed), inputs
    )


def jit_train_step(
    config: ml_collections.ConfigDict,
    model,
    objective: Objective,
    optimizer: optax.GradientTransformation,
    schedule: optax.Schedule,
    mesh,
    shardings: Any,
    compiler_options: dict[str, Any] | None = None,
):
    """train_step jitted for `mesh`: state in and out with `shardings`, the batch split over the batch
    axes, metrics replicated; the input state's buffers are donated to the output state.
    Call it under `jax.set_mesh(mesh)` (the distributed losses and GradCache read the mesh from there).
    `compiler_options` go to XLA, e.g. FAST_COMPILE where the compile costs more than the steps run."""
    step = functools.partial(
        train_step, model=model, objective=objective, optimizer=optimizer, schedule=schedule, config=config
    )
    return jax.jit(
        step,
        in_shardings=(shardings, mesh_lib.batch_sharding(mesh)),
        out_shardings=(shardings, mesh_lib.replicated(mesh)),
        donate_argnums=(0,),
        compiler_options=compiler_options,
    )
