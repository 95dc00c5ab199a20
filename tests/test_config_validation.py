"""Config validation: every mistake is one sentence naming the key and the fix, before jax compiles anything."""

import os
import subprocess
import sys

import pytest

from configs import clip, laclip, siglip
from configs.errors import ConfigError
from training.validation import validate_batch_division, validate_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**overrides):
    config = clip.get_config()
    for key, value in overrides.items():
        *parents, leaf = key.split("__")
        node = config
        for parent in parents:
            node = node[parent]
        with node.ignore_type():  # the point is to let wrong types through to the validator
            node[leaf] = value
    return config


@pytest.mark.parametrize("module", [clip, laclip, siglip])
@pytest.mark.parametrize("size", ["tiny", "B/16"])
def test_every_shipped_config_is_valid(module, size):
    validate_config(module.get_config(f"size={size}"))


CASES = [
    # (override, every substring the one-sentence message must hold)
    (dict(objective="clap"), ["Unknown objective 'clap'", "config.objective", "'clip', 'clip_hard_negatives'"]),
    (dict(data__name="coco"), ["Unknown dataset 'coco'", "config.data.name", "['shapes', 'webdataset'"]),
    (dict(data__text_augmentation="llama"), ["config.data.text_augmentation", "['none', 'laclip']"]),
    (dict(loss__implementation="blocked"), ["config.loss.implementation", "'dense', 'gathered', 'ring'"]),
    (dict(model__dtype="float16"), ["Unknown compute dtype 'float16'", "['float32', 'bfloat16']"]),
    (dict(model__image__pool="max"), ["config.model.image.pool", "['cls', 'gap', 'map']"]),
    (
        dict(model__text_projection="none", model__text__width=64),
        ["config.model.text_projection is 'none'", "config.model.embed_dim (128) must be config.model.text.width (64)"],
    ),
    (dict(optimizer__learning_rate=-1.0), ["config.optimizer.learning_rate must be positive, not -1.0"]),
    (dict(total_steps=0), ["config.total_steps must be positive, not 0"]),
    (dict(batch_size=-8), ["config.batch_size must be positive, not -8"]),
    (dict(optimizer__warmup_steps=-1), ["config.optimizer.warmup_steps must be >= 0"]),
    (dict(loss__tile_size=-512), ["config.loss.tile_size must be >= 0, not -512"]),
    (dict(loss__matmul_dtype="float16"), ["Unknown loss matmul dtype 'float16'", "['float32', 'bfloat16']"]),
    (
        dict(loss__implementation="gathered", loss__matmul_dtype="bfloat16"),
        ["config.loss.matmul_dtype='bfloat16' is not available with config.loss.implementation='gathered'", "'tiled'"],
    ),
    (dict(optimizer__b2=1.0), ["config.optimizer.b2 must be in [0, 1), not 1.0"]),
    (dict(max_consecutive_skipped_steps=0), ["config.max_consecutive_skipped_steps must be positive"]),
    (dict(total_steps=1.5), ["config.total_steps must be an int, not 1.5"]),
    (dict(batch_size="256"), ["config.batch_size must be an int, not '256'"]),
    (dict(model__remat=1), ["config.model.remat must be true or false, not 1"]),
    (dict(model__scan_layers=True, model__kind="decoder"), ["config.model.kind is 'decoder'", "scan_layers=False"]),
    (dict(seed=True), ["config.seed must be an int, not True"]),
    (dict(optimizer__learning_rate=float("nan")), ["config.optimizer.learning_rate must be a finite number"]),
    (dict(data__crop_scale=(0.5,)), ["config.data.crop_scale must be (low, high) with 0 < low <= high <= 1"]),
    (dict(data__crop_scale=("a", "b")), ["config.data.crop_scale must be a tuple of float"]),
    (dict(optimiser=None), ["config.optimiser is not a known config key", "configs/common.py"]),
    (dict(batch_size=4096), ["config.batch_size (4096) exceeds config.data.train_size (2000)"]),
    (dict(model__image__heads=3), ["config.model.image.width (", "is not divisible by config.model.image.heads (3)"]),
    (dict(model__image__patch_size=6), ["must be a multiple of config.model.image.patch_size (6)"]),
    (dict(text__tokenizer_path="/no/such.model"), ["Tokenizer file '/no/such.model' does not exist"]),
    (dict(init_from__workdir="/no/such/run"), ["config.init_from.workdir '/no/such/run' holds no checkpoints"]),
]


@pytest.mark.parametrize("overrides, fragments", CASES, ids=[next(iter(c[0])) for c in CASES])
def test_each_mistake_is_one_sentence_naming_the_key(overrides, fragments):
    config = _config(**overrides)
    config.data.train_size = 2000
    with pytest.raises(ConfigError) as error:
        validate_config(config)
    message = str(error.value)
    assert "\n" not in message and message.endswith("."), message
    for fragment in fragments:
        assert fragment in message, message


def test_init_from_needs_a_prefix(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    with pytest.raises(ConfigError, match=r"param_prefixes must name at least one"):
        validate_config(_config(init_from__workdir=str(tmp_path), init_from__param_prefixes=()))


@pytest.mark.parametrize(
    "batch, devices, processes, fragment",
    [
        (30, 8, 1, "config.batch_size (30) is not divisible by the 8 devices; choose a multiple of 8."),
        (6, 4, 4, "config.batch_size (6) is not divisible by the 4 processes; choose a multiple of 4."),
        (36, 8, 2, "not divisible by the 8 devices; choose a multiple of 8."),
    ],
)
def test_batch_must_split_over_devices_and_processes(batch, devices, processes, fragment):
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        validate_batch_division(batch, devices, processes)
    validate_batch_division(batch * devices * processes, devices, processes)


MAIN_CASES = [
    (["--config.loss.implementation=blocked"], "set config.loss.implementation to one of ['dense', 'gathered'"),
    (["--config.data.crop_scale=(0.9,)"], "config.data.crop_scale must be (low, high)"),
    (["--config.model.text.heads=3"], "is not divisible by config.model.text.heads (3); choose a head count"),
    # Found once jax is up, right after the mesh is made: 2 fake devices.
    (["--config.batch_size=33", "--config.data.cache_dir="], "config.batch_size (33) is not divisible by the 2"),
]


@pytest.mark.parametrize("args, message", MAIN_CASES, ids=[c[0][0] for c in MAIN_CASES])
def test_main_reports_the_mistake_in_one_line_and_exits_non_zero(tmp_path, args, message):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    command = [sys.executable, "main.py", "--config=configs/clip.py", f"--workdir={tmp_path}", *args]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-3000:]
    assert not (tmp_path / "checkpoints").exists()  # nothing trained, nothing compiled
