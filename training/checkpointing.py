"""orbax checkpoints of the train state and the data iterator, in <workdir>/checkpoints."""

from __future__ import annotations

import json
import os

import jax
import orbax.checkpoint as ocp

from training.train_state import TrainState


class Checkpointer:
    """Saves (state, data-iterator state) every so many steps; restores the latest complete one.

    orbax writes each step into a temporary folder and renames it when complete, so
    a checkpoint interrupted mid-write is never listed, and never restored.
    """

    def __init__(self, workdir: str, keep: int):
        self._manager = ocp.CheckpointManager(
            os.path.join(os.path.abspath(workdir), "checkpoints"),
            options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
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
        """Restores into the shapes, dtypes and shardings of `abstract_state` (ShapeDtypeStructs)."""
        step = self._manager.latest_step() if step is None else step
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()),
        )
        return restored.state, restored.data

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()


def _jsonable(value):
    if isinstance(value, bytes):
        return value.decode("latin-1")
    raise TypeError(f"Cannot store {type(value).__name__} in the data-iterator checkpoint.")
