"""Each method's options (config.<objective>) are checked before jax starts: a typo, a wrong type or a bad
value is one sentence naming the key and the fix, from validate_config and from main.py alike."""

import glob
import importlib
import json
import os
import subprocess
import sys

import pytest

from configs import clip, lm, mend, salt
from configs.common import flat_items
from configs.errors import ConfigError
from training.method_validation import METHOD_CONFIGS
from training.validation import validate_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# objective -> (an option, a value of the right type that the objective refuses, a fragment of the message)
BAD_VALUES = {
    "alip": ("momentum", 1.5, "config.alip.momentum must be in [0, 1)"),
    "ccp": ("queue_size", 8, "config.ccp.queue_size (8) is below config.batch_size"),
    "climb": ("pacing", "cubic", "config.climb.pacing='cubic' is not one of"),
    "clip_hard_negatives": ("mask_mode", "drop", "Unknown config.clip_hard_negatives.mask_mode 'drop'"),
    "clip_refine": ("features", "pooled", "Unknown config.clip_refine.features 'pooled'"),
    "coconut": ("temperature", 0.0, "config.coconut.temperature=0.0 must be positive"),
    "close": ("noise_std", 3.0, "config.close.noise_std must be in [0, 2]"),
    "cloc": ("region_weight", -1.0, "config.cloc.region_weight must be at least 0, not -1.0"),
    "degla": ("tgc_negatives", "all", "Unknown config.degla.tgc_negatives 'all'"),
    "denseclip": ("prompting", "mid", "Unknown config.denseclip.prompting 'mid'; use one of ['none', 'post', 'pre']"),
    "dreamlip": ("multipos", "triplet", "Unknown config.dreamlip.multipos 'triplet'; use one of ['infonce'"),
    "limber": ("dropout", 1.0, "config.limber.dropout must be in [0, 1)"),
    "mend": ("virtual_tokens", 0, "config.mend.virtual_tokens must be at least 1"),
    "multicsr": ("loss", "mse", "Unknown config.multicsr.loss 'mse'; use one of ['ce', 'bce']"),
    "pcp": ("mlm_probability", 1.5, "config.pcp.mlm_probability must lie in (0, 1)"),
    "phf": ("objective", "rwr", "Unknown config.phf.objective 'rwr'; use one of ['mle', 'filtering'"),
    "proclip": ("stage", 3, "Unknown config.proclip.stage 3; use 1 or 2"),
    "protoclip": ("num_prototypes", 100_000, "raise config.protoclip.episode_steps or lower num_prototypes"),
    "salt": ("weight", 1.5, "config.salt.weight=1.5 is outside [0, 1]"),
    "simcse": ("mode", "semi", "Unknown config.simcse.mode 'semi'; use one of ['unsup', 'sup']"),
    "simctg": ("margin", 3.0, "config.simctg.margin=3.0 is outside [0, 2]"),
    "space2": ("temperature", 0.0, "config.space2.temperature must be positive, not 0.0"),
    "superedit": ("conditioning_dropout", 0.5, "config.superedit.conditioning_dropout (0.5) is each of three shares"),
    "uclip": ("temperature", 0.0, "config.uclip.temperature must be positive, not 0.0"),
    "xclip": ("prompt_weight", -1.0, "config.xclip.prompt_weight must be at least 0, not -1.0"),
}
METHODS = sorted(METHOD_CONFIGS)


def _fake_run(workdir, config) -> str:
    """A workdir that passes for a trained run of `config`: its checkpoints folder, run_info.json, tokenizer."""
    (workdir / "checkpoints").mkdir()
    (workdir / "run_info.json").write_text(json.dumps({"config": config.to_dict()}, default=list))
    (workdir / "tokenizer.model").write_text("")
    return str(workdir)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> str:
    """A CLIP run as init_from.workdir sees it (post-pretraining methods and captioners start from one)."""
    return _fake_run(tmp_path_factory.mktemp("run"), clip.get_config())


@pytest.fixture(scope="module")
def language_model_run(tmp_path_factory) -> str:
    return _fake_run(tmp_path_factory.mktemp("lm"), lm.get_config())


@pytest.fixture(scope="module")
def small_language_model_run(tmp_path_factory) -> str:
    return _fake_run(tmp_path_factory.mktemp("slm"), salt.get_config("stage=teacher"))


@pytest.fixture(scope="module")
def in_context_run(tmp_path_factory) -> str:
    return _fake_run(tmp_path_factory.mktemp("icl"), mend.get_config("stage=icl"))


def _config(name: str, trained_run: str, language_model_run: str = "", small_language_model_run: str = "",
            in_context_run: str = ""):  # fmt: skip
    config = METHOD_CONFIGS[name].get_config()
    config.init_from.workdir = trained_run  # post-pretraining methods start from a run
    if "lm_workdir" in config[name]:  # captioners caption with a trained language model; MEND distils for one
        config[name].lm_workdir = in_context_run if name == "mend" else language_model_run
    if "teacher_workdir" in config[name]:  # SALT distils from a small one
        config[name].teacher_workdir = small_language_model_run
    return config


def _one_sentence(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message.endswith("."), message
    return message


def test_every_method_config_with_a_section_is_checked():
    """Every config file in configs/ whose config has a config.<objective> section is in METHOD_CONFIGS."""
    with_section = set()
    for path in glob.glob(os.path.join(ROOT, "configs", "*.py")):
        module = importlib.import_module(f"configs.{os.path.basename(path)[:-3]}")
        if hasattr(module, "get_config"):
            config = module.get_config()
            if config.objective in config:
                with_section.add(config.objective)
    assert with_section == set(METHOD_CONFIGS) == set(BAD_VALUES)


@pytest.mark.parametrize("name", METHODS)
def test_the_method_config_is_valid(name, trained_run, language_model_run, small_language_model_run, in_context_run):
    validate_config(_config(name, trained_run, language_model_run, small_language_model_run, in_context_run))


@pytest.mark.parametrize("name", METHODS)
def test_a_typo_in_a_method_option_names_the_valid_ones(name, trained_run):
    config = _config(name, trained_run)
    option = sorted(config[name])[0]
    config[name][option + "s"] = config[name][option]
    with pytest.raises(ConfigError) as error:
        validate_config(config)
    message = _one_sentence(error)
    assert f"config.{name}.{option}s is not an option of {name}" in message
    assert repr(sorted(set(flat_items(config[name])) - {option + "s"})) in message  # nested options as "a.b"


@pytest.mark.parametrize("name", METHODS)
def test_a_method_option_of_the_wrong_type_is_named(name, trained_run):
    config = _config(name, trained_run)
    option = sorted(config[name])[0]
    with config[name].ignore_type():
        config[name][option] = [1]
    with pytest.raises(ConfigError, match=rf"config\.{name}\.{option} must be .*, not \[1\]\."):
        validate_config(config)


@pytest.mark.parametrize("name", METHODS)
def test_a_bad_method_value_is_refused_by_the_objective(name, trained_run):
    config = _config(name, trained_run)
    option, value, fragment = BAD_VALUES[name]
    config[name][option] = value
    with pytest.raises(ConfigError) as error:
        validate_config(config)
    assert fragment in _one_sentence(error)


def test_a_missing_method_section_is_named(trained_run):
    config = _config("dreamlip", trained_run)
    del config["dreamlip"]
    with pytest.raises(ConfigError, match=r"reads its options from config.dreamlip; start from configs/dreamlip.py"):
        validate_config(config)


REFUSED = [
    # (objective, overrides, fragment): settings the objective cannot run with, known from the config alone.
    ("dreamlip", {"data.name": "csv", "data.path": __file__}, "reads each record's 'long_caption'"),
    ("alip", {"data.name": "jsonl", "data.path": __file__}, "reads each record's 'raw_caption'"),
    ("alip", {"alip.raw_caption_weight": -1.0}, "config.alip.raw_caption_weight must be >= 0"),
    # A WebDataset sample's json may carry hard_negatives; a CSV row cannot.
    ("degla", {"data.name": "csv", "data.path": __file__}, "reads each record's 'hard_negatives'"),
    ("uclip", {"init_from.workdir": ""}, "uCLIP extends a trained CLIP"),
    ("proclip", {"init_from.workdir": ""}, "starts from a trained model; set config.init_from.workdir"),
    ("proclip", {"proclip.embedder_workdir": "/no/such/run"}, "embedder_workdir '/no/such/run' holds no checkpoints"),
    ("multicsr", {"init_from.workdir": ""}, "MultiCSR masks false negatives with a trained frozen encoder"),
    ("clip_hard_negatives", {"init_from.workdir": "", "clip_hard_negatives.frozen_threshold": 0.9}, "frozen_threshold"),
    ("ccp", {"data.name": "shape_sentences"}, "CCP trains on documents"),
    ("simcse", {"simcse.mode": "sup", "data.name": "sentences", "data.path": __file__}, "needs (sentence, entailment"),
    ("protoclip", {"model.head_dim": 0}, "ProtoCLIP needs projection heads"),
]


@pytest.mark.parametrize("name, overrides, fragment", REFUSED, ids=[f"{c[0]}-{next(iter(c[1]))}" for c in REFUSED])
def test_what_an_objective_cannot_run_with_is_refused(name, overrides, fragment, trained_run):
    config = _config(name, trained_run)
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = config
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    with pytest.raises(ConfigError) as error:
        validate_config(config)
    assert fragment in _one_sentence(error)


def _main(name: str, *overrides: str, workdir: str) -> str:
    """main.py's stderr for the method's config with `overrides`; JAX_PLATFORMS names no platform, so any use of
    a jax backend would end in a traceback instead of the one-line error."""
    env = dict(os.environ, JAX_PLATFORMS="none_at_all")
    path = "configs/proclip.py" if name == "proclip" else os.path.relpath(METHOD_CONFIGS[name].__file__, ROOT)
    command = [sys.executable, "main.py", f"--config={path}", f"--workdir={workdir}", *overrides]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


@pytest.mark.parametrize("name", METHODS)
def test_main_reports_a_method_typo_and_a_bad_value_in_one_line(name, trained_run, tmp_path):
    error = _main(name, f"--config.{name}.typo_key=1", workdir=str(tmp_path))
    assert f"--config.{name}.typo_key names the config key 'typo_key', which does not exist; use one of" in error
    option, value, fragment = BAD_VALUES[name]
    error = _main(name, f"--config.init_from.workdir={trained_run}", f"--config.{name}.{option}={value}",
                  workdir=str(tmp_path))  # fmt: skip
    assert fragment in error
    assert not (tmp_path / "checkpoints").exists()
