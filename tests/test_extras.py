"""A config that needs an optional extra says which one to install, in one sentence, before jax starts."""

import os
import subprocess
import sys

import pytest

from configs import clip, laclip
from configs.extras import missing_extra

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _only(*absent):
    return lambda module: module not in absent


def test_the_quick_start_needs_no_extra_even_without_any_optional_package():
    nothing_optional = _only(
        "torch", "transformers", "safetensors", "tokenizers", "ftfy", "regex", "matplotlib", "sklearn"
    )
    assert missing_extra(laclip.get_config(), "train", nothing_optional) is None


INTEROP = "needs the `interop` extra"
PRETRAINED = "config.init_from.pretrained"
EVAL = "--mode=eval (report plots, scikit-learn's digits) needs the `eval` extra"


@pytest.mark.parametrize(
    "setting, mode, absent, expected",
    [
        (("text", "tokenizer", "clip_bpe"), "train", ("ftfy",), f"config.text.tokenizer=clip_bpe {INTEROP} (ftfy"),
        (("text", "tokenizer", "wordpiece"), "train", ("tokenizers",), f"config.text.tokenizer=wordpiece {INTEROP}"),
        (("init_from", "pretrained", "/m.safetensors"), "train", ("safetensors",), f"{PRETRAINED} {INTEROP}"),
        (("init_from", "pretrained", "/m.bin"), "train", ("torch",), f"{PRETRAINED} {INTEROP} (torch not"),
        (None, "eval", ("matplotlib", "sklearn"), f"{EVAL} (matplotlib, sklearn not installed)"),
    ],
)
def test_a_missing_extra_is_named_with_its_install_command(setting, mode, absent, expected):
    config = clip.get_config()
    if setting:
        section, key, value = setting
        config[section][key] = value
    message = missing_extra(config, mode, _only(*absent))
    extra = "eval" if mode == "eval" else "interop"
    assert message.startswith(expected) and f"pip install -e '.[{extra}]'" in message and "\n" not in message
    assert missing_extra(config, mode, _only()) is None  # installed: nothing to say


def test_main_refuses_a_missing_extra_in_one_line_before_jax_starts(tmp_path):
    # A stand-in `sklearn` that cannot be imported: find_spec sees a package whose spec is None.
    fake = tmp_path / "site"
    fake.mkdir()
    (fake / "sitecustomize.py").write_text(
        "import importlib.util\n"
        "_find = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a: None if name == 'sklearn' else _find(name, *a)\n"
    )
    env = dict(os.environ, PYTHONPATH=f"{fake}{os.pathsep}{ROOT}")
    result = subprocess.run(
        [sys.executable, "main.py", "--config=configs/clip.py", f"--workdir={tmp_path}", "--mode=eval"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {EVAL} (sklearn not installed); install it with pip install -e '.[eval]'."]
