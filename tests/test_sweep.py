"""Sweeps: get_hyper expansion, run workdir names, checked overrides, and the summary table of real runs."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

from configs.errors import ConfigError
from launch import hyper, local, results, sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config_file(tmp_path, get_hyper_body: str, name: str = "swept.py") -> str:
    path = tmp_path / name
    path.write_text(
        "from configs import common\n\n\ndef get_config(arg=None):\n    return common.get_base_config(arg)\n\n\n"
        "def get_hyper(hyper):\n" + textwrap.indent(textwrap.dedent(get_hyper_body), "    ")
    )
    return str(path)


def test_product_is_every_combination_first_sweep_slowest():
    runs = hyper.product([hyper.sweep("config.a", [1, 2]), hyper.sweep("config.b", ["x", "y", "z"])])
    expected = [{"config.a": a, "config.b": b} for a in (1, 2) for b in ("x", "y", "z")]
    assert runs == expected


def test_zipit_pairs_runs_and_chainit_concatenates():
    zipped = hyper.zipit([hyper.sweep("a", [1, 2]), hyper.sweep("b", [10, 20])])
    assert zipped == [{"a": 1, "b": 10}, {"a": 2, "b": 20}]
    chained = hyper.chainit([zipped, hyper.fixed("a", 3, length=2)])
    assert chained == [{"a": 1, "b": 10}, {"a": 2, "b": 20}, {"a": 3}, {"a": 3}]
    nested = hyper.product([hyper.sweep("s", hyper.discrete([0, 1])), zipped])
    assert nested == [{"s": s, **z} for s in (0, 1) for z in zipped]
    assert hyper.product([]) == [{}]


def test_zipit_of_unequal_lengths_and_repeated_keys_are_clear_errors():
    with pytest.raises(ValueError, match=r"equal length, got lengths \[2, 3\]"):
        hyper.zipit([hyper.sweep("a", [1, 2]), hyper.sweep("b", [1, 2, 3])])
    with pytest.raises(ValueError, match=r"sets \['a'\] in more than one"):
        hyper.product([hyper.sweep("a", [1]), hyper.sweep("a", [2])])


def test_expand_applies_nested_keys_to_the_config(tmp_path):
    path = _config_file(
        tmp_path,
        """
        return hyper.product([
            hyper.sweep("config.optimizer.learning_rate", [1e-3, 3e-3]),
            hyper.zipit([hyper.sweep("config.model.image.width", [32, 64]), hyper.sweep("model.text.width", [32, 64])]),
        ])
        """,
    )
    runs = sweep.expand(path, ["--config.total_steps=7", "--config.data.crop_scale=(0.5, 1.0)"])
    swept = [(r.config.optimizer.learning_rate, r.config.model.image.width, r.config.model.text.width) for r in runs]
    assert swept == [
        (1e-3, 32, 32),
        (1e-3, 64, 64),
        (3e-3, 32, 32),
        (3e-3, 64, 64),
    ]
    assert all(r.config.total_steps == 7 and r.config.data.crop_scale == (0.5, 1.0) for r in runs)
    assert runs[3].overrides == {"optimizer.learning_rate": 3e-3, "model.image.width": 64, "model.text.width": 64}
    assert runs[3].name == "learning_rate=0.003,image.width=64,text.width=64"
    assert sweep.override_flags(runs[3].overrides) == [
        "--config.optimizer.learning_rate=0.003",
        "--config.model.image.width=64",
        "--config.model.text.width=64",
    ]


def test_unknown_key_names_the_valid_ones(tmp_path):
    path = _config_file(tmp_path, 'return hyper.sweep("config.optimizer.learnig_rate", [1e-3])')
    with pytest.raises(ConfigError, match=r"sets config.optimizer.learnig_rate, which is not a config key; use one of"):
        sweep.expand(path)
    try:
        sweep.expand(path)
    except ConfigError as e:
        assert "'optimizer.learning_rate'" in str(e)
    with pytest.raises(ConfigError, match=r"--config.optimizer.lr=1.*use one of \[.*'optimizer.learning_rate'"):
        sweep.expand(_config_file(tmp_path, 'return hyper.sweep("seed", [0])', "ok.py"), ["--config.optimizer.lr=1"])


@pytest.mark.parametrize(
    "body, flags, message",
    [
        ('return hyper.sweep("config.batch_size", ["big"])', [], "Run 0 (batch_size=big): config.batch_size cannot"),
        ('return hyper.sweep("config.optimizer.learning_rate", [-1.0])', [], "learning_rate must be positive"),
        ('return hyper.sweep("config.seed", [0, 0])', [], "Runs 0 and 1 of the sweep have the same overrides"),
        ('return hyper.sweep("config.seed", [0])', ["--config.seed=1"], "The sweep already sets ['seed']"),
        ('return hyper.zipit([hyper.sweep("a", [1]), hyper.sweep("b", [])])', [], "equal length"),
    ],
)
def test_bad_sweeps_are_one_clear_sentence(tmp_path, body, flags, message):
    with pytest.raises(ConfigError) as e:
        sweep.expand(_config_file(tmp_path, body), flags)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_config_without_get_hyper_says_how_to_add_one():
    with pytest.raises(ConfigError, match="configs/siglip.py defines no get_hyper"):
        sweep.expand("configs/siglip.py")


def test_run_names_are_stable_filesystem_safe_and_unique():
    runs = [
        {"model.image.width": 64, "model.text.width": 64, "data.crop_scale": (0.5, 1.0)},
        {"model.image.width": 64, "model.text.width": 32, "data.crop_scale": (1.0, 1.0)},
    ]
    names = sweep.run_names(runs)
    assert names == [
        "image.width=64,text.width=64,crop_scale=_0.5,_1.0_",
        "image.width=64,text.width=32,crop_scale=_1.0,_1.0_",
    ]
    assert sweep.run_names([dict(r) for r in runs]) == names  # a pure function of the overrides
    # "a/b" and "a_b" both sanitise to "a_b": both names then end in a hash of the raw overrides.
    clashing = sweep.run_names([{"text.tokenizer_path": "a/b"}, {"text.tokenizer_path": "a_b"}])
    assert clashing[0].startswith("tokenizer_path=a_b-") and clashing[1].startswith("tokenizer_path=a_b-")
    assert clashing[0] != clashing[1]
    long = sweep.run_names([{"text.tokenizer_path": "x" * 300}, {"text.tokenizer_path": "x" * 299 + "y"}])
    assert all(len(n) == sweep.MAX_NAME_CHARS for n in long) and long[0] != long[1]
    assert sweep.run_names([{}]) == ["default"]
    for name in names + clashing + long:
        assert set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+=,-")


def test_concurrent_runs_get_disjoint_gpus():
    assert local.slot_environment(0, 0) == {}
    assert local.slot_environment(0, 2) == {"CUDA_VISIBLE_DEVICES": "0,1"}
    assert local.slot_environment(3, 2) == {"CUDA_VISIBLE_DEVICES": "6,7"}


def test_results_table_means_and_sample_deviations():
    def summary(zero_shot: float, loss: float) -> dict:
        return {"eval": {"zero_shot/shape_colour": zero_shot}, "final_loss": loss, "wall_time_s": 120.0}

    table = results.results_table(
        {"a": [summary(0.2, 1.0), summary(0.4, 2.0)], "b": [summary(0.5, 3.0)]}, name_header="run", with_loss=True
    )
    lines = table.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    row_a = dict(zip(header, (c.strip() for c in lines[2].strip("|").split("|")), strict=True))
    row_b = dict(zip(header, (c.strip() for c in lines[3].strip("|").split("|")), strict=True))
    # mean 30.0, sample standard deviation sqrt(((20-30)^2 + (40-30)^2) / 1) = 14.14
    assert row_a["zero-shot shape+colour"] == "30.0 ± 14.1" and row_a["final loss"] == "1.500 ± 0.707"
    assert row_a["seeds"] == "2" and row_a["minutes"] == "2.0" and row_a["zero-shot shape"] == "—"
    assert row_b["zero-shot shape+colour"] == "50.0" and row_b["final loss"] == "3.000"


TINY = [
    "--config.total_steps=3",
    "--config.batch_size=16",
    "--config.data.train_size=64",
    "--config.data.cache_dir=",
    "--config.eval.num_examples=32",
    "--config.eval.batch_size=32",
    "--config.model.image.width=32",
    "--config.model.image.depth=1",
    "--config.model.text.width=32",
    "--config.model.text.depth=1",
    "--config.model.embed_dim=32",
    "--config.log_every_steps=1",
    "--config.optimizer.warmup_steps=1",
]


def test_local_sweep_of_two_tiny_runs_and_its_summary_table(tmp_path):
    path = _config_file(tmp_path, 'return hyper.sweep("config.optimizer.learning_rate", [1e-3, 2e-3])')
    parent = tmp_path / "runs"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    command = [sys.executable, "-m", "launch.local", f"--config={path}", f"--workdir={parent}", "--parallel=2"]
    result = subprocess.run([*command, "--", *TINY], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    names = ["learning_rate=0.001", "learning_rate=0.002"]
    assert sorted(os.listdir(parent)) == names
    summaries = [json.loads((parent / n / "summary.json").read_text()) for n in names]
    assert [s["step"] for s in summaries] == [3, 3]
    infos = [json.loads((parent / n / "run_info.json").read_text()) for n in names]
    assert [i["config"]["optimizer"]["learning_rate"] for i in infos] == [1e-3, 2e-3]
    rows = {line.split("|")[1].strip(): line for line in result.stdout.splitlines() if line.startswith("| learning")}
    for name, summary in zip(names, summaries, strict=True):
        cells = [c.strip() for c in rows[name].strip("|").split("|")]
        assert cells[1] == "1"  # one seed
        assert cells[3] == f"{100 * summary['eval']['zero_shot/shape_colour']:.1f}"
        assert cells[-1] == f"{summary['final_loss']:.3f}"
    # A second launch finds both finished and trains nothing.
    again = subprocess.run([*command, "--", *TINY], cwd=ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "2 already finished" in again.stdout and "started" not in again.stdout
    listed = subprocess.run(
        [sys.executable, "-m", "launch.sweep", f"--config={path}", f"--workdir={parent}", "--list", "--", *TINY],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert listed.stdout.count("finished") == 2, listed.stdout + listed.stderr


def test_xmanager_launcher_without_xmanager_is_one_clear_sentence():
    if importlib.util.find_spec("xmanager") is not None:
        pytest.skip("xmanager is installed here")
    command = [sys.executable, "-m", "launch.xmanager_tpu", "--config=configs/clip.py", "--workdir=/gcs/bucket/sweep"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "needs the xmanager package; `pip install xmanager`" in result.stderr


@pytest.mark.parametrize(
    "array_task, expected",
    [
        ("", "python main.py --config=configs/clip.py --workdir=runs/x --config.total_steps=3"),
        ("4", "python -m launch.local --config=configs/clip.py --workdir=runs/x --only=4 -- --config.total_steps=3"),
    ],
)
def test_slurm_script_runs_main_or_one_run_of_the_sweep(tmp_path, array_task, expected):
    fake_srun = tmp_path / "srun"
    fake_srun.write_text(f'#!/usr/bin/env bash\necho "$@" > {tmp_path}/srun_args\n')
    fake_srun.chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}", SLURM_ARRAY_TASK_ID=array_task)
    script = os.path.join(ROOT, "launch", "slurm.sbatch")
    command = ["bash", script, "configs/clip.py", "runs/x", "--config.total_steps=3"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "srun_args").read_text().strip() == expected
    usage = subprocess.run(["bash", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert usage.returncode != 0 and "usage: sbatch [--array=0-N] launch/slurm.sbatch CONFIG WORKDIR" in usage.stderr


def test_runs_by_name_groups_seeds_and_fails_in_one_sentence(tmp_path):
    for name in ("clip_seed0", "clip_seed1", "uclip_seed0", "other"):
        (tmp_path / name).mkdir()
    groups = results.runs_by_name(f"{tmp_path}/clip_seed*,{tmp_path}/uclip_*,{tmp_path}/other")
    assert {k: [os.path.basename(w) for w in v] for k, v in groups.items()} == {
        "clip": ["clip_seed0", "clip_seed1"],
        "other": ["other"],
        "uclip": ["uclip_seed0"],
    }
    with pytest.raises(SystemExit, match="no run folder matches"):
        results.runs_by_name(f"{tmp_path}/none*")
