"""Restoring checkpoints safely: shape mismatches named up front, partial restore by path prefix, no pickle."""

import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs.errors import ConfigError
from training.checkpointing import Checkpointer, init_params_from
from training.train_state import TrainState

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Modules and calls that unpickle: importing them, calling their load, torch.load, pandas.read_pickle.
UNPICKLERS = r"^\s*(import|from)\s+(c?pickle|dill|joblib|cloudpickle)\b|\b(c?pickle|dill|joblib)\.loads?\(|" + (
    r"torch\.load\(|read_pickle"
)


def _params(seed: int, width: int = 4) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "image_tower": {"patchify": {"kernel": jnp.asarray(rng.normal(size=(3, width)), jnp.float32)}},
        "image_projection": {"kernel": jnp.asarray(rng.normal(size=(width, 2)), jnp.float32)},
        "text_tower": {"embed": {"embedding": jnp.asarray(rng.normal(size=(5, width)), jnp.float32)}},
        "logit_scale": jnp.asarray(rng.normal(), jnp.float32),
    }


def _state(params: dict, step: int = 10) -> TrainState:
    return TrainState(
        step=jnp.asarray(step, jnp.int32),
        params=params,
        opt_state=optax.adam(1e-3).init(params),
        extra={},
        rng=jax.random.PRNGKey(0),
    )


def _abstract(tree):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("source_run")
    checkpointer = Checkpointer(str(workdir), keep=1)
    checkpointer.save(_state(_params(seed=1)), {"next_index": 3})
    checkpointer.wait()
    checkpointer.close()
    return str(workdir)


def test_restoring_into_other_shapes_names_each_mismatched_parameter(saved_run):
    checkpointer = Checkpointer(saved_run, keep=1)
    with pytest.raises(ConfigError) as error:
        checkpointer.restore(_abstract(_state(_params(seed=0, width=6))))
    message = str(error.value)
    assert "\n" not in message and "run_info.json" in message
    assert "image_tower/patchify/kernel is (3, 4) there but (3, 6) in the config" in message
    assert "image_projection/kernel is (4, 2) there but (6, 2) in the config" in message
    assert "text_tower/embed/embedding is (5, 4) there but (5, 6) in the config" in message
    assert "logit_scale" not in message  # same shape: not named


def test_restoring_a_model_with_other_parameters_names_the_missing_and_extra_ones(saved_run):
    params = _params(seed=0)
    params["logit_bias"] = params.pop("logit_scale")
    with pytest.raises(ConfigError, match=r"logit_bias \(\) is missing there; logit_scale \(\) is there but not in"):
        Checkpointer(saved_run, keep=1).restore(_abstract(_state(params)))


def test_init_from_copies_only_the_parameters_under_the_prefixes(saved_run):
    fresh, source = _params(seed=0), _params(seed=1)
    params, copied, step = init_params_from(saved_run, fresh, ["image_tower", "logit_scale"])
    assert step == 10 and copied == ["image_tower/patchify/kernel", "logit_scale"]
    np.testing.assert_array_equal(
        params["image_tower"]["patchify"]["kernel"], source["image_tower"]["patchify"]["kernel"]
    )
    np.testing.assert_array_equal(params["logit_scale"], source["logit_scale"])
    # "image_tower" is a whole path component: image_projection stays fresh, as does the text tower.
    np.testing.assert_array_equal(params["image_projection"]["kernel"], fresh["image_projection"]["kernel"])
    np.testing.assert_array_equal(params["text_tower"]["embed"]["embedding"], fresh["text_tower"]["embed"]["embedding"])


def test_init_from_with_a_prefix_that_matches_nothing_lists_the_top_level_names(saved_run):
    with pytest.raises(ConfigError) as error:
        init_params_from(saved_run, _params(seed=0), ["vision_tower"])
    message = str(error.value)
    assert "config.init_from.param_prefixes names 'vision_tower', which matches no parameter" in message
    assert "['image_projection', 'image_tower', 'logit_scale', 'text_tower']" in message


def test_init_from_with_other_shapes_under_the_prefix_names_them(saved_run):
    with pytest.raises(ConfigError, match=re.escape("image_tower/patchify/kernel is (3, 4) there but (3, 8) in")):
        init_params_from(saved_run, _params(seed=0, width=8), ["image_tower"])
    # Parameters outside the prefixes may differ freely.
    params = _params(seed=0)
    params["text_tower"]["embed"]["embedding"] = jnp.zeros((7, 3))
    init_params_from(saved_run, params, ["image_tower"])


def test_a_write_killed_midway_is_ignored_then_cleaned_up(tmp_path):
    checkpointer = Checkpointer(str(tmp_path), keep=3)
    checkpointer.save(_state(_params(seed=1), step=3), {"next_index": 1})
    checkpointer.wait()
    checkpointer.close()
    # SIGKILL during the write of step 6 leaves orbax's temporary folder, never the step's own name.
    (tmp_path / "checkpoints" / "6.orbax-checkpoint-tmp-1764000000" / "state").mkdir(parents=True)
    checkpointer = Checkpointer(str(tmp_path), keep=3)
    assert checkpointer.latest_step() == 3
    restored, data_state = checkpointer.restore(_abstract(_state(_params(seed=0))))
    assert int(restored.step) == 3 and data_state == {"next_index": 1}
    checkpointer.save(_state(_params(seed=2), step=6), {"next_index": 2})  # the rerun reaches step 6 again
    checkpointer.wait()
    checkpointer.close()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["3", "6"]


def test_no_pickle_in_any_loading_path():
    """Loading goes through orbax array storage, JSON, sentencepiece protos and npz without object arrays."""
    offenders = []
    for folder in ("main.py", "configs", "models", "losses", "input_pipeline", "evaluation", "training", "benchmarks"):
        path = os.path.join(ROOT, folder)
        files = [path] if path.endswith(".py") else [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs]
        for name in (f for f in files if f.endswith(".py")):
            with open(name, encoding="utf-8") as f:
                for number, line in enumerate(f, 1):
                    unsafe = re.search(UNPICKLERS, line) or ("np.load(" in line and "allow_pickle=False" not in line)
                    if unsafe or "allow_pickle=True" in line:
                        offenders.append(f"{os.path.relpath(name, ROOT)}:{number}: {line.strip()}")
    assert not offenders, offenders
