"""The main job as a user runs it: `python main.py --config=... --workdir=...` in a subprocess."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "--config.batch_size=64",
    "--config.data.train_size=2000",
    "--config.data.cache_dir=",
    "--config.eval.num_examples=256",
    "--config.eval.batch_size=256",
    "--config.log_every_steps=20",
    "--config.eval_every_steps=1000",
    "--config.checkpoint_every_steps=80",
    "--config.optimizer.warmup_steps=20",
    "--config.model.image.depth=2",
]


def run_main(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    return subprocess.run(
        [sys.executable, "main.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def laclip_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("laclip")
    result = run_main("--config=configs/laclip.py", f"--workdir={workdir}", "--config.total_steps=200", *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result


def test_main_job_trains_and_beats_chance(laclip_run):
    workdir, result = laclip_run
    summary = json.loads((workdir / "summary.json").read_text())
    assert summary["step"] == 200
    zero_shot = {k.split("/")[1]: v for k, v in summary["eval"].items() if k.startswith("zero_shot/")}
    assert zero_shot["colour"] > 0.4, zero_shot  # chance 1/8
    assert zero_shot["shape_colour"] > 3 / 64, zero_shot  # chance 1/64
    assert summary["final_loss"] < 3.5  # log(64) = 4.16 at chance
    # A trained model prefers the true caption to most minimally changed false ones (chance 0.5).
    assert summary["eval"]["compositional/colour"] > 0.6, summary["eval"]
    assert 0.0 < summary["eval"]["geometry/modality_gap"] < 2.0
    binding = {k for k in summary["eval"] if k.startswith(("binding/", "binding_rewrites/"))}
    assert len(binding) == 12 and "binding (captions)" in result.stdout, binding  # 4 kinds, mean, image-blind
    assert "zero-shot shape+colour" in result.stdout and "checkpoints" in result.stdout
    assert (workdir / "tokenizer.model").is_file() and (workdir / "run_info.json").is_file()
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "train/loss" in r] == list(range(20, 201, 20))
    # Every logged interval has rates (the compiling first step is left out of the first), and the
    # share of training time spent waiting for batches lies in (0, 1].
    rates = [r for r in lines if "train/steps_per_s" in r]
    assert len(rates) == 10 and all(
        r["train/steps_per_s"] > 0 and 0 < r["train/data_wait_fraction"] <= 1 for r in rates
    )
    assert "data wait" in result.stderr
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(workdir / "tensorboard"))


def test_tensorboard_reads_the_event_files(laclip_run):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    workdir, _ = laclip_run
    events = accumulator.EventAccumulator(str(workdir / "tensorboard"))
    events.Reload()
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == list(range(20, 201, 20))
    jsonl = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    expected = [r["train/loss"] for r in jsonl if "train/loss" in r]
    assert [e.value for e in losses] == pytest.approx(expected, rel=1e-6)


def test_rerun_of_a_finished_run_keeps_its_training_summary(laclip_run):
    workdir, _ = laclip_run
    before = json.loads((workdir / "summary.json").read_text())
    steps = f"--config.total_steps={before['step']}"
    result = run_main("--config=configs/laclip.py", f"--workdir={workdir}", steps, *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    after = json.loads((workdir / "summary.json").read_text())
    # Nothing is trained again: the run is re-evaluated, and its loss and wall time are the training's.
    assert after["step"] == before["step"] and after["eval"] == pytest.approx(before["eval"])
    assert (after["final_loss"], after["wall_time_s"]) == (before["final_loss"], before["wall_time_s"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config.bogus=1"], "config key 'bogus', which does not exist"),
        # Two overrides end in `path`: the sentence names the one that misses, with the keys beside it.
        (
            ["--config.data.path=x.csv", "--config.evals.shapes.path=y"],
            "--config.evals.shapes.path names the config key 'path', which does not exist; use one of ['prefix', "
            "'type']",
        ),
        (["--config.objective=clap"], "Unknown objective 'clap'; set config.objective to one of"),
        (["--config.optimizer.learning_rate=-1.0"], "config.optimizer.learning_rate must be positive"),
        (["--config.text.tokenizer_path=/no/such.model"], "Tokenizer file '/no/such.model' does not exist"),
        (["--config.data.text_augmentation=llama"], "set config.data.text_augmentation to one of"),
    ],
)
def test_bad_config_is_one_clear_sentence_before_compiling(tmp_path, args, message):
    result = run_main("--config=configs/clip.py", f"--workdir={tmp_path}", *args, timeout=120)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr


def test_unwritable_workdir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_main("--config=configs/clip.py", f"--workdir={blocker}/run", timeout=120)
    assert result.returncode != 0 and "pass a writable --workdir" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_config_argument_is_a_clear_error(tmp_path):
    result = run_main("--config=configs/clip.py:size=huge", f"--workdir={tmp_path}", timeout=120)
    assert result.returncode != 0 and "Unknown model size 'huge'; use one of" in result.stderr
