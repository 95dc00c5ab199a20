"""orbax checkpoints of the train state and the data iterator, in <workdir>/checkpoints.

No pickle anywhere: arrays go through orbax's array storage, the data-iterator state through JSON.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import jax
import orbax.checkpoint as ocp

from configs.errors import ConfigError
from models.param_paths import param_shapes, path_name
from training.train_state import TrainState

_MAX_LISTED = 6  # mismatched parameters named in one error message


class Checkpointer:
    """Saves (state, data-iterator state) every so many steps; restores the latest complete one.

    orbax writes each step into a temporary folder and renames it when complete, so
    a checkpoint interrupted mid-write is never listed, and never restored.
    """

    def __init__(self, workdir: str, keep: int):
        self._manager = ocp.CheckpointManager(
            checkpoints_dir(workdir),
            # cleanup_tmp_directories: a run killed mid-write leaves a temporary folder; the next one removes it.
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, cleanup_tmp_directories=True),
            # Named handlers let a fresh process read a checkpoint's metadata before restoring it.
            item_handlers={"state": ocp.StandardCheckpointHandler(), "data": ocp.JsonCheckpointHandler()},
        )

    @property
    def directory(self) -> str:
        return str(self._manager.directory)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, state: TrainState, data_state: dict, *, force: bool = False) -> None:
        step = int(jax.device_get(state.step))
        if step in self._manager.all_steps():
            return
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=ocp.args.JsonSave(json.loads(json.dumps(data_state, default=_jsonable))),
            ),
            force=force,
        )

    def restore(self, abstract_state: TrainState, step: int | None = None) -> tuple[TrainState, dict]:
        """Restores into the shapes, dtypes and shardings of `abstract_state` (ShapeDtypeStructs).

        Raises ConfigError naming every parameter whose shape differs from the checkpoint's.
        """
        step = self._manager.latest_step() if step is None else step
        saved = self._manager.item_metadata(step)["state"]["params"]
        check_param_shapes(param_shapes(saved), param_shapes(abstract_state.params), f"{self.directory}/{step}")
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()),
        )
        return restored.state, restored.data

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()


def last_good_checkpoint(checkpointer: Checkpointer) -> str:
    """'step N in DIR' for the latest complete checkpoint, or 'none yet'."""
    last = checkpointer.latest_step()
    return f"step {last} in {checkpointer.directory}" if last is not None else "none yet"


def checkpoints_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


def check_param_shapes(saved: dict, expected: dict, where: str) -> None:
    """Raises ConfigError listing parameters (path: shapes) that differ between a checkpoint and the model."""
    problems = [
        f"{p} is {saved[p]} there but {expected[p]} in the config"
        for p in sorted(saved.keys() & expected.keys())
        if saved[p] != expected[p]
    ]
    problems += [f"{p} {expected[p]} is missing there" for p in sorted(expected.keys() - saved.keys())]
    problems += [f"{p} {saved[p]} is there but not in the config" for p in sorted(saved.keys() - expected.keys())]
    if problems:
        listed = "; ".join(problems[:_MAX_LISTED])
        more = f"; and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        raise ConfigError(
            f"The checkpoint {where} does not match the model of this config ({listed}{more}); pass the config "
            "and overrides that run was trained with (see its run_info.json), or use a new --workdir."
        )


def init_params_from(
    workdir: str, params, prefixes: Sequence[str], key: str = "config.init_from.workdir"
) -> tuple[dict, list[str], int]:
    """`params` with every leaf whose path starts with one of `prefixes` replaced by the one in the latest
    checkpoint of another run's `workdir`; only those leaves are read. Returns (params, copied paths, step).

    A prefix matches whole path components: "image_tower" matches "image_tower/..." but not
    "image_tower_2/...". Raises ConfigError for a prefix that matches nothing or a shape that differs;
    `key` is the config key that named `workdir`, for the messages.
    """
    manager = ocp.CheckpointManager(
        checkpoints_dir(workdir),
        options=ocp.CheckpointManagerOptions(read_only=True),
        item_handlers={"state": ocp.PyTreeCheckpointHandler()},
    )
    step = manager.latest_step()
    if step is None:
        raise ConfigError(f"{key} {workdir!r} holds no complete checkpoint; train that run first or fix the path.")
    wanted = [p.strip("/") for p in prefixes]
    expected = param_shapes(params)
    chosen = {path for path in expected if any(_under(path, prefix) for prefix in wanted)}
    for prefix in wanted:
        if not any(_under(path, prefix) for path in chosen):
            top = sorted({path.split("/")[0] for path in expected})
            raise ConfigError(
                f"config.init_from.param_prefixes names {prefix!r}, which matches no parameter; use a path prefix "
                f"such as one of {top}."
            )
    saved = param_shapes(manager.item_metadata(step)["state"]["params"])
    where = f"{checkpoints_dir(workdir)}/{step} ({key})"
    check_param_shapes({p: saved[p] for p in chosen if p in saved}, {p: expected[p] for p in chosen}, where)

    abstract = _select(jax.tree.map(_abstract, params), chosen)
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(
                item={"params": abstract},
                restore_args=ocp.checkpoint_utils.construct_restore_args({"params": abstract}),
                partial_restore=True,
            )
        ),
    ).state["params"]
    manager.close()
    loaded = dict(jax.tree_util.tree_flatten_with_path(restored)[0])
    loaded = {path_name(path): leaf for path, leaf in loaded.items()}
    merged = jax.tree_util.tree_map_with_path(lambda path, x: loaded.get(path_name(path), x), params)
    return merged, sorted(chosen), step


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def _select(tree, chosen: set[str], prefix: str = ""):
    """The nested-dict subtree of `tree` holding only the leaves whose paths are in `chosen`."""
    if not isinstance(tree, Mapping):
        return tree if prefix in chosen else None
    picked = {k: _select(v, chosen, f"{prefix}/{k}" if prefix else str(k)) for k, v in tree.items()}
    return {k: v for k, v in picked.items() if v is not None and not (isinstance(v, Mapping) and not v)}


def _abstract(x):
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))


def _jsonable(value):
    if isinstance(value, bytes):
        return value.decode("latin-1")
    raise TypeError(f"Cannot store {type(value).__name__} in the data-iterator checkpoint.")
