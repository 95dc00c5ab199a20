"""`python main.py` on a tiny generated WebDataset with bad examples: trains, counts them, resumes."""

import json

import real_data as rd
from test_main import run_main

TINY = [
    "--config=configs/clip.py",
    "--config.data.name=webdataset",
    "--config.batch_size=16",
    "--config.log_every_steps=3",
    "--config.eval_every_steps=1000",
    "--config.checkpoint_every_steps=3",
    "--config.eval.num_examples=64",
    "--config.eval.batch_size=64",
    "--config.data.cache_dir=",
    "--config.model.image.width=32",
    "--config.model.image.depth=1",
    "--config.model.text.width=32",
    "--config.model.text.depth=1",
    "--config.model.embed_dim=32",
    "--config.text.vocab_size=300",
    "--config.optimizer.warmup_steps=2",
]


def test_main_trains_on_webdataset_shards_and_counts_bad_examples(tmp_path, monkeypatch):
    # A compilation cache for the two runs (run_main passes os.environ on): the resumed run reuses the programs.
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax_cache"))
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    bad = rd.bad_examples(40)
    rd.write_shard(tmp_path / "train-0.tar", rd.good_examples(20))
    rd.write_shard(tmp_path / "train-1.tar", rd.good_examples(20, start=20) + [example for example, _ in bad])
    workdir = tmp_path / "run"
    args = [*TINY, f"--workdir={workdir}", f"--config.data.path={tmp_path}"]  # --config first (absl)
    result = run_main(*args, "--config.total_steps=6", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "train/loss" in r]
    assert [r["step"] for r in train] == [3, 6]
    # 6 steps x 16 = 96 usable examples = 1.8 epochs of the 47 usable ones: every repair seen at least once.
    totals = {k: sum(r.get(k, 0) for r in train) for k in {k for r in train for k in r if k.startswith("train/data_")}}
    for _, kind in bad:
        assert totals.get(f"train/data_{kind}", 0) >= 1, (kind, totals)
    assert totals["train/data_skipped"] == sum(v for k, v in totals.items() if "/data_skipped_" in k)

    result = run_main(*args, "--config.total_steps=9", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resumed from step 6" in result.stderr


def test_missing_data_path_is_one_clear_sentence(tmp_path):
    result = run_main(*TINY, f"--workdir={tmp_path}", f"--config.data.path={tmp_path}/nope.tar", timeout=300)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "does not exist; fix config.data.path" in result.stderr
